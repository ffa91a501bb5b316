"""Who opens the change history (see accounts.roles): every role, each seeing only what they may see.

Auditors read everything, history included. Advisors and Operations open it too: the changelist lists, per tracked
model, only the changes of objects the viewer may view (the model's own view permission) and, for client-owned
models, only those of the clients in the viewer's scope; an object's own history page follows the same rule.
"""

from django.db import migrations

from accounts.roles import Role, grant_role_permissions


def grant(apps, schema_editor):
    grant_role_permissions(
        apps,
        "changelog",
        {Role.ADVISORS: ["view_change"], Role.OPERATIONS: ["view_change"], Role.AUDITORS: ["view_change"]},
    )


class Migration(migrations.Migration):
    dependencies = [
        ("changelog", "0001_change"),
        ("accounts", "0002_roles"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
