"""Decides what each staff role may do with portfolios (see accounts.roles).

An advisor opens and changes their clients' accounts but, as with clients, deleting one is for operations:
deletion only ever removes an account that never held anything, and that is back-office housekeeping.
"""

from django.db import migrations

from accounts.roles import Role, grant_role_permissions, model_codenames


def grant(apps, schema_editor):
    grant_role_permissions(
        apps,
        "clients",
        {
            Role.ADVISORS: model_codenames("portfolio", "view", "add", "change"),
            Role.OPERATIONS: model_codenames("portfolio", "view", "add", "change", "delete"),
            Role.AUDITORS: model_codenames("portfolio", "view"),
        },
    )


class Migration(migrations.Migration):
    dependencies = [
        ("clients", "0005_main_portfolios"),
        ("accounts", "0002_roles"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
