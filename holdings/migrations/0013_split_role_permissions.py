"""Who may use splits: as prices, which they sit beside as reference data. Everyone who reads prices reads splits
(positions and valuations count them); only Operations, who maintain prices, record them."""

from django.db import migrations

from accounts.roles import Role, grant_role_permissions, model_codenames


def grant(apps, schema_editor):
    grant_role_permissions(
        apps,
        "holdings",
        {
            Role.ADVISORS: model_codenames("split", "view"),
            Role.OPERATIONS: model_codenames("split", "view", "add", "change", "delete"),
            Role.AUDITORS: model_codenames("split", "view"),
        },
    )


class Migration(migrations.Migration):
    dependencies = [
        ("holdings", "0012_splits"),
        ("accounts", "0002_roles"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
