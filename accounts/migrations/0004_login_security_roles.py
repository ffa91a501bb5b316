"""Operations see and revoke login sessions; Auditors see them and the security events."""

from django.db import migrations

from accounts.roles import Role, grant_role_permissions, model_codenames


def grant(apps, schema_editor):
    grant_role_permissions(
        apps,
        "accounts",
        {
            Role.OPERATIONS: [
                *model_codenames("loginsession", "view", "revoke"),
                *model_codenames("securityevent", "view"),
            ],
            Role.AUDITORS: [
                *model_codenames("loginsession", "view"),
                *model_codenames("securityevent", "view"),
            ],
        },
    )


class Migration(migrations.Migration):
    dependencies = [("accounts", "0003_login_security")]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
