"""Decides what each staff role may do with this app's models (see accounts.roles)."""

from django.db import migrations

from accounts.roles import Role, grant_role_permissions, model_codenames


def grant(apps, schema_editor):
    grant_role_permissions(
        apps,
        "holdings",
        {
            Role.ADVISORS: [
                *model_codenames("asset", "view"),
                *model_codenames("price", "view"),
                *model_codenames("allocation", "view", "add", "change", "delete"),
            ],
            Role.OPERATIONS: [
                *model_codenames("asset", "view", "add", "change", "delete"),
                *model_codenames("price", "view", "add", "change", "delete"),
                *model_codenames("allocation", "view", "add", "change", "delete"),
            ],
            Role.AUDITORS: [
                *model_codenames("asset", "view"),
                *model_codenames("price", "view"),
                *model_codenames("allocation", "view"),
            ],
        },
    )


class Migration(migrations.Migration):
    dependencies = [
        ("holdings", "0001_initial"),
        ("accounts", "0002_roles"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
