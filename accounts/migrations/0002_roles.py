"""Creates the staff roles. Each app's own migration grants the roles its models' permissions."""

from django.db import migrations

from accounts.roles import Role, grant_role_permissions, model_codenames


def create_roles(apps, schema_editor):
    group_model = apps.get_model("auth", "Group")
    for role in Role:
        group_model.objects.get_or_create(name=role.value)
    grant_role_permissions(
        apps,
        "accounts",
        {
            Role.OPERATIONS: model_codenames("user", "view"),
            Role.AUDITORS: model_codenames("user", "view"),
        },
    )


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, migrations.RunPython.noop)]
