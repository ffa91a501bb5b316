"""Decides what each staff role may do with this app's models (see accounts.roles)."""

from django.db import migrations

from accounts.roles import Role, grant_role_permissions, model_codenames


def grant(apps, schema_editor):
    grant_role_permissions(
        apps,
        "ledger",
        {
            Role.ADVISORS: model_codenames("transaction", "view", "add"),
            Role.OPERATIONS: model_codenames("transaction", "view", "add"),
            Role.AUDITORS: model_codenames("transaction", "view"),
        },
    )


class Migration(migrations.Migration):
    dependencies = [
        ("ledger", "0001_initial"),
        ("accounts", "0002_roles"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
