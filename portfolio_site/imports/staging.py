"""Staging tables: temporary tables that rows are streamed into, COPY on PostgreSQL, batched inserts elsewhere."""

import datetime
from contextlib import ExitStack
from typing import Any, Self

from django.db import connection

INSERT_ROWS = 5000  # rows per batched INSERT where there is no COPY

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_text(value: Any) -> str:
    """One value in PostgreSQL's COPY text format."""
    if value is None:
        return "\\N"
    if isinstance(value, str):
        return value.translate(_COPY_ESCAPES)
    return str(value)


class Staging:
    """A temporary table that rows are streamed into.

    `with staging:` streams (creating the table first if needed); leaving the block ends the stream, so the
    rows are in the table. The table lives until `drop()`, or until the transaction is rolled back.
    `write_encoded` appends rows encoded by `encode` (in another thread) in one go, outside any `with`.
    """

    def __init__(self, name: str, columns: list[tuple[str, str]]) -> None:
        self.name = name
        self.columns = columns
        self._buffer: list[tuple[Any, ...]] = []
        self._copy: Any = None
        self._stack = ExitStack()
        self._created = False
        self.postgres = connection.vendor == "postgresql"

    def create(self) -> Self:
        """(Re)creates the table, empty."""
        definition = ", ".join(f"{name} {sql_type}" for name, sql_type in self.columns)
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {self.name}")
            cursor.execute(f"CREATE TEMPORARY TABLE {self.name} ({definition})")
        self._created = True
        return self

    def __enter__(self) -> Self:
        if not self._created:
            self.create()
        if self.postgres:
            cursor = self._stack.enter_context(connection.cursor())
            self._copy = self._stack.enter_context(cursor.cursor.copy(self._copy_sql()))
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _copy_sql(self) -> str:
        return f"COPY {self.name} ({', '.join(name for name, _ in self.columns)}) FROM STDIN"

    def add(self, row: tuple[Any, ...]) -> None:
        if self._copy is not None:
            self._copy.write_row(row)
            return
        self._buffer.append(row)
        if len(self._buffer) >= INSERT_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            marks = ", ".join(["%s"] * len(self.columns))
            names = ", ".join(name for name, _ in self.columns)
            with connection.cursor() as cursor:
                cursor.executemany(f"INSERT INTO {self.name} ({names}) VALUES ({marks})", self._buffer)
            self._buffer.clear()

    def encode(self, rows: list[tuple[Any, ...]]) -> Any:
        """The rows ready for `write_encoded`: COPY text on PostgreSQL. Touches no database, so a parsing
        thread can do this work while the database thread is busy."""
        if not self.postgres:
            return rows
        return "".join("\t".join(map(copy_text, row)) + "\n" for row in rows).encode()

    def write_encoded(self, payload: Any) -> None:
        """Appends encoded rows to the (existing) table in one go."""
        if not self.postgres:
            self._buffer.extend(payload)
            self._flush()
            return
        # Django's own error classes (IntegrityError...) for the raw driver's, as for any other query.
        with (
            connection.wrap_database_errors,
            connection.cursor() as cursor,
            cursor.cursor.copy(self._copy_sql()) as copy,
        ):
            copy.write(payload)

    def close(self) -> None:
        """Ends the stream: everything added is in the table."""
        self._flush()
        self._stack.close()
        self._copy = None

    def drop(self) -> None:
        self.close()
        if self._created:
            with connection.cursor() as cursor:
                cursor.execute(f"DROP TABLE IF EXISTS {self.name}")
            self._created = False


def staged_date(value: Any) -> datetime.date:
    """A date read back from a staging table by raw SQL: SQLite hands back its text."""
    return value if isinstance(value, datetime.date) else datetime.date.fromisoformat(str(value))
