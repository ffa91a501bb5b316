"""Operations may see and run imports; Auditors may see the import batches (see accounts.roles)."""

from django.db import migrations

from accounts.roles import Role, grant_role_permissions, model_codenames


def grant(apps, schema_editor):
    grant_role_permissions(
        apps,
        "imports",
        {
            Role.OPERATIONS: [*model_codenames("importbatch", "view"), "run_import"],
            Role.AUDITORS: model_codenames("importbatch", "view"),
        },
    )


class Migration(migrations.Migration):
    dependencies = [
        ("imports", "0001_initial"),
        ("accounts", "0002_roles"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
