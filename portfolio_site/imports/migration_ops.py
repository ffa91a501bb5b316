"""The migration operation that gives a model its `import_batch` column, reversibly on SQLite too.

Django's SQLite schema editor removes a foreign-key column by rebuilding the whole table, which drops the table's
triggers and trips over the triggers of other tables that name it (clients.migration_ops: the portfolio/client
agreement of transactions and allocations). Adding a nullable column is a plain ALTER TABLE already; so is removing
it once its index is gone, which is what the reverse does on SQLite.
"""

from typing import Any

from django.db import migrations


class AddImportBatchField(migrations.AddField):
    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        connection = schema_editor.connection
        if connection.vendor != "sqlite":
            super().database_backwards(app_label, schema_editor, from_state, to_state)
            return
        model = from_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(connection.alias, model):
            return
        column = model._meta.get_field(self.name).column
        table = model._meta.db_table
        quote = schema_editor.quote_name
        with connection.cursor() as cursor:
            constraints = connection.introspection.get_constraints(cursor, table)
        for name, constraint in constraints.items():
            if constraint["index"] and constraint["columns"] == [column]:
                schema_editor.execute(f"DROP INDEX {quote(name)}")
        schema_editor.execute(f"ALTER TABLE {quote(table)} DROP COLUMN {quote(column)}")
