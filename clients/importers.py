"""The CSV row format of clients for the import engine: an upsert by email, under the rules of clients.services.

Rows stream in and are written in batches: each batch costs one query for the clients it names that already
exist, one bulk insert and one bulk update, so memory holds a batch and the set of emails seen, never the file.
"""

import datetime
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import connection
from django.db.models import Model
from django.db.models.functions import Lower
from django.utils import timezone

from accounts.roles import is_advisor, sees_all_clients
from portfolio_site.cache import invalidate_namespace
from portfolio_site.imports import parsing
from portfolio_site.imports.engine import Column, ImportFormat, RowError, register

from .models import Client
from .services import CACHE_NAMESPACE, NOT_YOURS

BATCH_ROWS = 2000
UPDATED_FIELDS = ("name", "advisor", "base_currency", "phone", "is_active", "notes")
COMPARED = ("name", "advisor_id", "base_currency", "phone", "is_active", "notes")  # the advisor by id: no query
NOT_YOURS_OWN = "An advisor may only take on clients for themselves."


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
class _Row:
    line: int
    values: dict[str, Any]
    client: Client  # validated, unsaved


@register
class ClientFormat(ImportFormat):
    kind = "clients"
    description = (
        "clients, created or updated by email (the row is the whole record: an empty optional cell means "
        "its default). The advisor must be an active staff member; an advisor importing may only name "
        "themselves and only change the clients they advise."
    )
    columns = (
        Column("email", parsing.email, help="the client's email address (the natural key)"),
        Column("name", parsing.text(200), help="full name"),
        Column("advisor", parsing.email, help="email of the responsible staff member"),
        Column("base_currency", parsing.currency, help="ISO 4217 code the client reports in"),
        Column("phone", parsing.text(32), required=False, help="digits, spaces and - ( ) . /, optionally +"),
        Column("is_active", parsing.boolean, required=False, help="true or false (default true)"),
        Column("notes", parsing.text(10_000), required=False, help="free text"),
    )

    def prepare(self) -> None:
        actor = self.run.actor
        self.all_seeing = sees_all_clients(actor)
        self.may_act = self.all_seeing or is_advisor(actor)
        self.actor_pk = getattr(actor, "pk", None)
        self.advisors: dict[str, Any] = {}
        self.seen: dict[str, int] = {}
        self.pending: list[_Row] = []
        self.last_batch: tuple[list[Client], list[Client]] = ([], [])
        self.now = timezone.now()

    def add(self, line: int, values: dict[str, Any]) -> None:
        if not self.may_act:
            raise RowError("row", NOT_YOURS)
        email = values["email"]
        if email in self.seen:
            raise RowError("email", f"{email} is already on line {self.seen[email]}")
        advisor = self._advisor(values["advisor"])
        if advisor is None:
            raise RowError("advisor", f"no staff member with the email {values['advisor']}")
        client = Client(
            email=email,
            name=values["name"],
            advisor=advisor,
            base_currency=values["base_currency"],
            phone=values["phone"] or "",
            is_active=True if values["is_active"] is None else values["is_active"],
            notes=values["notes"] or "",
        )
        try:
            # What client_create's full_clean() checks, less the per-row queries: the advisor was looked up
            # above and the email is matched against the database per batch.
            client.full_clean(exclude=["advisor"], validate_unique=False, validate_constraints=False)
        except ValidationError as error:
            column, message = validation_messages(error, {c.name: c.name for c in self.columns})[0]
            raise RowError(column, message) from None
        self.seen[email] = line
        self.pending.append(_Row(line, values, client))
        if len(self.pending) >= BATCH_ROWS:
            self._save(*self._sort(self.pending))
            self.pending = []

    def _advisor(self, email: str) -> Any:
        if email not in self.advisors:
            self.advisors[email] = get_user_model().objects.filter(email__iexact=email).first()
        return self.advisors[email]

    def _sort(self, rows: list[_Row]) -> tuple[list[Client], list[Client]]:
        """Splits a batch into clients to create and clients to update, refusing what the rules forbid."""
        emails = [row.client.email for row in rows]
        existing = {
            client.email.lower(): client
            for client in Client.objects.alias(email_lower=Lower("email")).filter(email_lower__in=emails)
        }
        creates: list[Client] = []
        updates: list[Client] = []
        for row in rows:
            new = row.client
            old = existing.get(new.email)
            if old is not None and not self.all_seeing and old.advisor_id != self.actor_pk:
                self._reject(row, "email", "a client with this email exists and is not one you may act on")
                continue
            if old is None or old.advisor_id != new.advisor_id:
                if not new.advisor.is_active:
                    self._reject(row, "advisor", "The advisor's account is not active.")
                    continue
                if not self.all_seeing and new.advisor_id != self.actor_pk:
                    self._reject(row, "advisor", NOT_YOURS_OWN)
                    continue
            if old is None:
                creates.append(new)
                self.run.created += 1
                continue
            if all(getattr(old, name) == getattr(new, name) for name in COMPARED):
                self.run.skipped += 1
                continue
            for name in COMPARED:
                setattr(old, name, getattr(new, name))
            old.updated_at = self.now
            updates.append(old)
            self.run.updated += 1
        return creates, updates

    def _reject(self, row: _Row, column: str, message: str) -> None:
        self.run.reject(row.line, column, message, cells(self.columns, row.values))

    def _save(self, creates: list[Client], updates: list[Client]) -> None:
        if self.run.failed:
            return  # the run will roll back: only keep validating
        Client.objects.bulk_create(creates, batch_size=BATCH_ROWS)
        update_rows(Client, updates, [*UPDATED_FIELDS, "updated_at"])

    def check(self) -> None:
        self.last_batch = self._sort(self.pending)
        self.pending = []

    def write(self) -> None:
        self._save(*self.last_batch)
        if self.run.created or self.run.updated:
            invalidate_namespace(CACHE_NAMESPACE)

    @classmethod
    def export_rows(cls) -> Iterator[dict[str, str]]:
        clients = Client.objects.select_related("advisor").order_by("email")
        for client in clients.iterator(chunk_size=BATCH_ROWS):
            yield {
                "email": client.email,
                "name": client.name,
                "advisor": client.advisor.email,
                "base_currency": client.base_currency,
                "phone": client.phone,
                "is_active": "true" if client.is_active else "false",
                "notes": client.notes,
            }
