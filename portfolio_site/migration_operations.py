"""Migration operations that keep a large table writable while they run."""

from typing import Any

from django.contrib.postgres.operations import AddIndexConcurrently


class AddIndexOnline(AddIndexConcurrently):
    """AddIndex that, on PostgreSQL, builds the index with CREATE INDEX CONCURRENTLY: a million-row ledger keeps
    taking postings while it is built, instead of being locked against writes for the build. Other databases get
    the plain CREATE INDEX (SQLite has no other). Its migration must say `atomic = False`, as for
    AddIndexConcurrently."""

    def describe(self) -> str:
        return f"Create index {self.index.name} on field(s) {', '.join(self.index.fields)} of model {self.model_name}"

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)
        else:
            super(AddIndexConcurrently, self).database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)
        else:
            super(AddIndexConcurrently, self).database_backwards(app_label, schema_editor, from_state, to_state)
