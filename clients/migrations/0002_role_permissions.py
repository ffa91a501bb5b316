"""Decides what each staff role may do with this app's models (see accounts.roles)."""

from django.db import migrations

from accounts.roles import Role, grant_role_permissions, model_codenames


def grant(apps, schema_editor):
    grant_role_permissions(
        apps,
        "clients",
        {
            Role.ADVISORS: model_codenames("client", "view", "add", "change"),
            Role.OPERATIONS: model_codenames("client", "view", "add", "change", "delete"),
            Role.AUDITORS: model_codenames("client", "view"),
        },
    )


class Migration(migrations.Migration):
    dependencies = [
        ("clients", "0001_initial"),
        ("accounts", "0002_roles"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
