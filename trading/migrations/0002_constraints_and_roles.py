"""What the database holds beyond Django's own constraints, and who may trade.

An order's client is its portfolio's client (the composite key every row hanging off a portfolio has). Order events
are the audit trail: on PostgreSQL a trigger refuses changing or deleting one (the model refuses it everywhere, but
a trail that a stray UPDATE can rewrite is no trail). Advisors place, submit and cancel orders for their clients;
Operations see every order and may cancel one (a desk stopping a mistaken order); Auditors read."""

from typing import Any

from django.db import migrations

from accounts.roles import Role, grant_role_permissions, model_codenames
from clients.migration_ops import portfolio_client_agreement

APPEND_ONLY = """
CREATE FUNCTION trading_orderevent_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'trading_orderevent is append-only: % refused', TG_OP;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER trading_orderevent_append_only BEFORE UPDATE OR DELETE ON trading_orderevent
FOR EACH ROW EXECUTE FUNCTION trading_orderevent_append_only();
"""
DROP_APPEND_ONLY = """
DROP TRIGGER IF EXISTS trading_orderevent_append_only ON trading_orderevent;
DROP FUNCTION IF EXISTS trading_orderevent_append_only();
"""


def append_only(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(APPEND_ONLY, params=None)  # None: its % is PL/pgSQL's, not a placeholder
    elif schema_editor.connection.vendor == "sqlite":
        for operation in ("UPDATE", "DELETE"):
            schema_editor.execute(
                f"CREATE TRIGGER trading_orderevent_no_{operation.lower()} BEFORE {operation} ON trading_orderevent "
                f"BEGIN SELECT RAISE(ABORT, 'trading_orderevent is append-only: {operation} refused'); END"
            )


def allow_changes(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP_APPEND_ONLY)
    elif schema_editor.connection.vendor == "sqlite":
        for operation in ("update", "delete"):
            schema_editor.execute(f"DROP TRIGGER IF EXISTS trading_orderevent_no_{operation}")


def grant(apps: Any, schema_editor: Any) -> None:
    read = [
        *model_codenames("order", "view"),
        *model_codenames("fill", "view"),
        *model_codenames("orderevent", "view"),
    ]
    grant_role_permissions(
        apps,
        "trading",
        {
            Role.ADVISORS: [*read, "add_order", "submit_order", "cancel_order"],
            Role.OPERATIONS: [*read, "cancel_order"],
            Role.AUDITORS: read,
        },
    )


class Migration(migrations.Migration):
    dependencies = [
        ("trading", "0001_initial"),
        ("accounts", "0002_roles"),
    ]

    operations = [
        portfolio_client_agreement("trading_order"),
        migrations.RunPython(append_only, allow_changes),
        migrations.RunPython(grant, migrations.RunPython.noop),
    ]
