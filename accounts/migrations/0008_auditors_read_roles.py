"""Auditors read everything, the roles (groups) and what each may do included; they change nothing."""

from django.db import migrations

from accounts.roles import Role, grant_role_permissions, model_codenames


def grant(apps, schema_editor):
    grant_role_permissions(apps, "auth", {Role.AUDITORS: model_codenames("group", "view")})


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0007_user_roles_change_history"),
        ("auth", "0012_alter_user_first_name_max_length"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
