"""Whoever may view, add, change or delete clients may do the same with their portfolios (a client's accounts).

Read from each role's client permissions as they stand, not restated, so that a role whose client permissions
were changed on a live site gets the matching portfolio permissions.
"""

from django.db import migrations

from accounts.roles import Role, grant_role_permissions

ACTIONS = ("view", "add", "change", "delete")


def grant(apps, schema_editor):
    group_model = apps.get_model("auth", "Group")
    grants = {}
    for role in Role:
        held = set(
            group_model.objects.filter(name=role.value, permissions__content_type__app_label="clients").values_list(
                "permissions__codename", flat=True
            )
        )
        actions = [action for action in ACTIONS if f"{action}_client" in held]
        if actions:
            grants[role] = [f"{action}_portfolio" for action in actions]
    grant_role_permissions(apps, "clients", grants)


class Migration(migrations.Migration):
    dependencies = [
        ("clients", "0005_main_portfolios"),
        ("accounts", "0002_roles"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
