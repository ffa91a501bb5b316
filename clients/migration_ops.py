"""Migration operations for the models that hang off a portfolio (ledger transactions, holdings allocations).

Such a row stores its portfolio and, for simple queries, its client too; the database holds the two to agree:
on PostgreSQL a (portfolio_id, client_id) foreign key onto the portfolio's unique (id, client_id); on SQLite,
which cannot add a constraint to a table, triggers that refuse a disagreeing row and refuse moving a portfolio
that has rows to another client. The pair is the rows' key to their portfolio and client: it holds both to exist,
so the models declare the two single keys without a constraint of their own (`db_constraint=False`), and a row
written costs one key check, not three. (SQLite then no longer refuses deleting a portfolio that has rows by raw
SQL: a trigger cannot wait for the commit as its deferred key did, and would refuse Django's own flush, which
deletes the tables in name order; the models' PROTECT refuses it in every door of the application.)

Django's SQLite schema editor rebuilds a table to alter it, dropping its triggers: each app's test that the
database refuses a disagreeing row guards against a later migration doing that silently, and
`sqlite_rebuild_keeping_agreement` makes them again.
"""

from typing import Any

from django.db import migrations


def _sqlite_statements(table: str) -> list[str]:
    disagrees = "NEW.client_id IS NOT (SELECT client_id FROM clients_portfolio WHERE id = NEW.portfolio_id)"
    refuse = f"SELECT RAISE(ABORT, '{table}_portfolio_client: the portfolio belongs to another client')"
    return [
        f"CREATE TRIGGER {table}_portfolio_client_insert BEFORE INSERT ON {table} "
        f"FOR EACH ROW WHEN {disagrees} BEGIN {refuse}; END",
        f"CREATE TRIGGER {table}_portfolio_client_update BEFORE UPDATE OF portfolio_id, client_id ON {table} "
        f"FOR EACH ROW WHEN {disagrees} BEGIN {refuse}; END",
        f"CREATE TRIGGER {table}_portfolio_moves BEFORE UPDATE OF client_id ON clients_portfolio "
        f"FOR EACH ROW WHEN NEW.client_id IS NOT OLD.client_id "
        f"AND EXISTS (SELECT 1 FROM {table} WHERE portfolio_id = OLD.id) "
        f"BEGIN SELECT RAISE(ABORT, '{table}_portfolio_client: the portfolio has rows of its client'); END",
    ]


# The triggers `_sqlite_statements` makes, by their name after the table's.
_SQLITE_TRIGGERS = ("portfolio_client_insert", "portfolio_client_update", "portfolio_moves")


def portfolio_client_agreement(table: str) -> migrations.RunPython:
    """The operation that makes the database hold `table`'s client to be its portfolio's client."""

    def forwards(apps: Any, schema_editor: Any) -> None:
        vendor = schema_editor.connection.vendor
        if vendor == "postgresql":
            schema_editor.execute(
                f"ALTER TABLE {table} ADD CONSTRAINT {table}_portfolio_client_fk FOREIGN KEY (portfolio_id, client_id) "
                # Checked at once (not deferred like Django's own keys): a row is refused where it is written.
                "REFERENCES clients_portfolio (id, client_id)"
            )
        elif vendor == "sqlite":
            for statement in _sqlite_statements(table):
                schema_editor.execute(statement)

    def backwards(apps: Any, schema_editor: Any) -> None:
        vendor = schema_editor.connection.vendor
        if vendor == "postgresql":
            schema_editor.execute(f"ALTER TABLE {table} DROP CONSTRAINT {table}_portfolio_client_fk")
        elif vendor == "sqlite":
            for suffix in _SQLITE_TRIGGERS:
                schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_{suffix}")

    return migrations.RunPython(forwards, backwards)


def rows_to_main_portfolio(app_label: str, model_name: str) -> migrations.RunPython:
    """Moves every row of the model into its client's "Main" portfolio (made by clients 0005), and opens
    that portfolio no later than its earliest row."""

    def forwards(apps: Any, schema_editor: Any) -> None:
        from django.db.models import OuterRef, Subquery

        model = apps.get_model(app_label, model_name)
        portfolio_model = apps.get_model("clients", "Portfolio")
        main = portfolio_model.objects.filter(client_id=OuterRef("client_id"), name="Main").values("id")[:1]
        model.objects.filter(portfolio__isnull=True).update(portfolio_id=Subquery(main))
        earliest = model.objects.filter(portfolio_id=OuterRef("pk")).order_by("date").values("date")[:1]
        portfolio_model.objects.filter(opened_on__gt=Subquery(earliest)).update(opened_on=Subquery(earliest))

    return migrations.RunPython(forwards, migrations.RunPython.noop)


def sqlite_rebuild_keeping_agreement(table: str, operations: list[Any]) -> list[Any]:
    """`operations` that make Django's SQLite schema editor rebuild `table` (altering a field or a check
    constraint), with the table's agreement triggers dropped before and made again after: the rebuild would drop
    its own and trip over the one on clients_portfolio that names it. Nothing changes on PostgreSQL."""

    def drop(apps: Any, schema_editor: Any) -> None:
        if schema_editor.connection.vendor == "sqlite":
            for suffix in _SQLITE_TRIGGERS:
                schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_{suffix}")

    def create(apps: Any, schema_editor: Any) -> None:
        if schema_editor.connection.vendor == "sqlite":
            for statement in _sqlite_statements(table):
                schema_editor.execute(statement)

    return [migrations.RunPython(drop, create), *operations, migrations.RunPython(create, drop)]
