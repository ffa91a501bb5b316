"""A base for formats that create or update one model's rows by natural key, a batch at a time.

Each batch costs one query for the rows it names that already exist, one bulk insert and one prepared
UPDATE run; memory holds a batch and the keys seen so far, never the file. A row that matches its stored
record field for field is skipped, so importing a file twice changes nothing.
"""

import datetime
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, ClassVar

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import connection
from django.db.models import Model, QuerySet
from django.utils import timezone

from portfolio_site.cache import invalidate_namespace

from .formats import Column, ImportFormat, RowError

BATCH_ROWS = 2000


def cells(columns: tuple[Column, ...], values: dict[str, Any]) -> list[str]:
    """A parsed row written back as text, in the columns' order (for the rejects file)."""
    out = []
    for column in columns:
        value = values.get(column.name)
        if value is None:
            out.append("")
        elif isinstance(value, bool):
            out.append("true" if value else "false")
        elif isinstance(value, datetime.date):
            out.append(value.isoformat())
        else:
            out.append(str(value))
    return out


def update_rows(model: type[Model], objects: list[Any], fields: list[str]) -> None:
    """Saves the named fields of many rows: one prepared UPDATE run for all of them (Django's bulk_update builds
    a CASE expression per row and field, which costs milliseconds a row)."""
    if not objects:
        return
    quote = connection.ops.quote_name
    by_name = {field.name: field for field in model._meta.concrete_fields}
    columns = [by_name[name] for name in fields]
    assignments = ", ".join(f"{quote(str(field.column))} = %s" for field in columns)
    params = [
        [*(field.get_db_prep_save(getattr(obj, field.attname), connection) for field in columns), obj.pk]
        for obj in objects
    ]
    with connection.cursor() as cursor:
        cursor.executemany(f"UPDATE {quote(model._meta.db_table)} SET {assignments} WHERE id = %s", params)


def validation_messages(error: ValidationError, columns: dict[str, str]) -> list[tuple[str, str]]:
    """(column, message) pairs of a ValidationError, its fields named as the file's columns (else "row")."""
    if not hasattr(error, "error_dict"):
        return [("row", " ".join(error.messages))]
    return [
        (columns.get(name, "row") if name != NON_FIELD_ERRORS else "row", " ".join(messages))
        for name, messages in error.message_dict.items()
    ]


@dataclass
class PendingRow:
    line: int
    values: dict[str, Any]
    instance: Any  # validated, unsaved


class UpsertFormat(ImportFormat):
    """Subclasses declare the model and its fields and implement `build`, `natural_key` and `existing`;
    `refusal` may forbid a create or an update the services would forbid."""

    model: ClassVar[type[Model]]
    compared: ClassVar[tuple[str, ...]]  # attribute names: equal on every one means "skipped"
    saved: ClassVar[tuple[str, ...]]  # field names an update writes
    cache_namespaces: ClassVar[tuple[str, ...]] = ()
    clean_exclude: ClassVar[tuple[str, ...]] = ()

    def prepare(self) -> None:
        self.pending: list[PendingRow] = []
        self.last_batch: tuple[list[Any], list[Any]] = ([], [])
        self.now = timezone.now()

    def build(self, line: int, values: dict[str, Any]) -> Any:
        """The unsaved instance a row describes; RowError to refuse it (repeated keys included)."""
        raise NotImplementedError

    def natural_key(self, instance: Any) -> Hashable:
        raise NotImplementedError

    def existing(self, rows: list[PendingRow]) -> dict[Hashable, Any]:
        """The stored records a batch names, by natural key (one query, through `locked`)."""
        raise NotImplementedError

    @staticmethod
    def locked(records: QuerySet[Any]) -> QuerySet[Any]:
        """`records` locked for the rest of the run, in primary-key order (one order for every writer: no
        deadlock), as the services lock what they change: the comparison, the refusals (visibility included)
        and the update all see the row as it is when written, not as it was when read."""
        return records.select_for_update().order_by("pk")

    def refusal(self, row: PendingRow, old: Any) -> tuple[str, str] | None:
        """(column, reason) when the row may not create (old is None) or update `old`."""
        return None

    def add(self, line: int, values: dict[str, Any]) -> None:
        instance = self.build(line, values)
        try:
            # What the services' full_clean() checks, less the per-row queries: uniqueness is matched
            # against the database per batch, and the rules that need other rows by `refusal`.
            instance.full_clean(exclude=list(self.clean_exclude), validate_unique=False, validate_constraints=False)
        except ValidationError as error:
            column, message = validation_messages(error, {c.name: c.name for c in self.columns})[0]
            raise RowError(column, message) from None
        self.pending.append(PendingRow(line, values, instance))
        if len(self.pending) >= BATCH_ROWS:
            self._save(*self._sort(self.pending))
            self.pending = []

    def _sort(self, rows: list[PendingRow]) -> tuple[list[Any], list[Any]]:
        """Splits a batch into records to create and records to update, counting what is skipped."""
        existing = self.existing(rows)
        creates: list[Any] = []
        updates: list[Any] = []
        for row in rows:
            new = row.instance
            old = existing.get(self.natural_key(new))
            refused = self.refusal(row, old)
            if refused is not None:
                self.run.reject(row.line, *refused, cells(self.columns, row.values))
            elif old is None:
                new.import_batch = self.run.batch  # provenance: which file created the row
                creates.append(new)
                self.run.created += 1
            elif all(getattr(old, name) == getattr(new, name) for name in self.compared):
                self.run.skipped += 1
            else:
                for name in self.compared:
                    setattr(old, name, getattr(new, name))
                old.updated_at = self.now
                updates.append(old)
                self.run.updated += 1
        return creates, updates

    def _save(self, creates: list[Any], updates: list[Any]) -> None:
        if not self.run.may_write:
            return  # the run will roll back: only keep validating
        self.model.objects.bulk_create(creates, batch_size=BATCH_ROWS)  # type: ignore[attr-defined]
        update_rows(self.model, updates, [*self.saved, "updated_at"])

    def check(self) -> None:
        self.last_batch = self._sort(self.pending)
        self.pending = []

    def write(self) -> None:
        self._save(*self.last_batch)
        if self.run.created or self.run.updated:
            for namespace in self.cache_namespaces:
                invalidate_namespace(namespace)
