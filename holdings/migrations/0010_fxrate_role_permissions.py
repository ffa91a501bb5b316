"""Who may use exchange rates: as prices, which they sit beside as market data. Everyone who reads prices reads
rates (a valuation needs both); Operations, who maintain prices, maintain rates."""

from django.db import migrations

from accounts.roles import Role, grant_role_permissions, model_codenames


def grant(apps, schema_editor):
    grant_role_permissions(
        apps,
        "holdings",
        {
            Role.ADVISORS: model_codenames("fxrate", "view"),
            Role.OPERATIONS: model_codenames("fxrate", "view", "add", "change", "delete"),
            Role.AUDITORS: model_codenames("fxrate", "view"),
        },
    )


class Migration(migrations.Migration):
    dependencies = [
        ("holdings", "0009_fx_rates"),
        ("accounts", "0002_roles"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
