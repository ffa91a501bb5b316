"""The CSV row format of cash movements (deposits and withdrawals) for the import engine.

Set-based: rows stream into a staging table (COPY on PostgreSQL), and the checks that need every row
(duplicate references, rows already posted, the running balance in date order) and the insert run as SQL.
"""

import hashlib
from collections.abc import Iterator
from typing import Any

from django.db import DatabaseError, connection
from django.db.models import Sum
from django.db.models.expressions import RawSQL
from django.utils import timezone

from clients.models import Client
from portfolio_site.imports import parsing
from portfolio_site.imports.engine import Column, ImportFormat, RowError, Staging, register
from portfolio_site.money import AMOUNT_DIGITS, AMOUNT_PLACES

from .models import Transaction, signed_amount

Kind = Transaction.Kind
TABLE = Transaction._meta.db_table


@register
class TransactionFormat(ImportFormat):
    kind = "transactions"
    description = (
        "deposits and withdrawals. A row with a reference posts once per client and reference; a row without "
        "one posts once per identical row (its content and how often it occurs in the file). Rows are applied "
        "in date order and none may overdraw the client's cash in its currency."
    )
    columns = (
        Column("client", parsing.email, help="the client's email address"),
        Column("kind", parsing.choice(Transaction.CASH_MOVEMENTS), help="deposit or withdrawal"),
        Column(
            "amount",
            parsing.decimal(max_digits=AMOUNT_DIGITS, places=AMOUNT_PLACES, minimum="0", exclusive=True),
            help=f"positive, up to {AMOUNT_PLACES} decimal places",
        ),
        Column("currency", parsing.currency, help="ISO 4217 code"),
        Column("date", parsing.iso_date, help="value date, YYYY-MM-DD"),
        Column("reference", parsing.text(100), required=False, help="external id, unique per client"),
        Column("notes", parsing.text(10_000), required=False, help="free text"),
    )

    def prepare(self) -> None:
        # Only clients the actor may see can be named; the rest read as unknown.
        self.client_ids = dict(Client.objects.visible_to(self.run.actor).values_list("email", "id"))
        self.rejected_lines: set[int] = set()
        self.staging = Staging(
            "import_transactions",
            [
                ("line", "integer NOT NULL"),
                ("client_id", "bigint NOT NULL"),
                ("kind", "varchar(16) NOT NULL"),
                ("amount", f"numeric({AMOUNT_DIGITS}, {AMOUNT_PLACES}) NOT NULL"),
                ("currency", "varchar(3) NOT NULL"),
                ("date", "date NOT NULL"),
                ("reference", "varchar(100)"),
                ("notes", "text NOT NULL"),
                ("content_hash", "varchar(64) NOT NULL"),
            ],
        ).__enter__()

    def add(self, line: int, values: dict[str, Any]) -> None:
        client_id = self.client_ids.get(values["client"])
        if client_id is None:
            raise RowError("client", f"no client with the email {values['client']} (or not one you may see)")
        notes = values["notes"] or ""
        content = "\x1f".join(
            [
                str(client_id),
                values["kind"],
                str(values["amount"].normalize()),
                values["currency"],
                str(values["date"]),
                notes,
            ]
        )
        self.staging.add(
            (
                line,
                client_id,
                values["kind"],
                values["amount"],
                values["currency"],
                values["date"],
                values["reference"],
                notes,
                hashlib.sha256(content.encode()).hexdigest()[:40],
            )
        )

    def close(self) -> None:
        try:
            self.staging.__exit__(None, None, None)
            with connection.cursor() as cursor:
                cursor.execute("DROP TABLE IF EXISTS import_transactions_new")
        except DatabaseError:
            # The run is already failing on a database error (which propagates); the rollback drops the tables.
            pass

    # --- After the last row ---------------------------------------------------------------------

    def check(self) -> None:
        self.staging.close()
        with connection.cursor() as cursor:
            self._refuse_repeated_references(cursor)
            self._refuse_changed_references(cursor)
            cursor.execute("DROP TABLE IF EXISTS import_transactions_new")
            cursor.execute(
                "CREATE TEMPORARY TABLE import_transactions_new AS "
                "SELECT line, client_id, kind, amount, currency, date, reference, notes, "
                "CASE WHEN reference IS NULL THEN content_hash || ':' || "
                "CAST(ROW_NUMBER() OVER (PARTITION BY client_id, content_hash ORDER BY line) AS varchar(20)) END "
                "AS import_key FROM import_transactions"
            )
            self._drop_rejected(cursor)
            self._skip_already_posted(cursor)
            self._lock_clients(cursor)
            self._refuse_overdrafts(cursor)

    def _refuse_repeated_references(self, cursor: Any) -> None:
        cursor.execute(
            "SELECT line, reference, first_line FROM (SELECT line, reference, "
            "MIN(line) OVER (PARTITION BY client_id, reference) AS first_line "
            "FROM import_transactions WHERE reference IS NOT NULL) repeated WHERE line <> first_line ORDER BY line"
        )
        for line, reference, first_line in cursor.fetchall():
            self._reject(line, "reference", f"{reference!r} is used on line {first_line} for the same client too")

    def _refuse_changed_references(self, cursor: Any) -> None:
        cursor.execute(
            f"SELECT s.line, s.reference FROM import_transactions s JOIN {TABLE} t "
            "ON t.client_id = s.client_id AND t.reference = s.reference "
            "WHERE NOT (t.kind = s.kind AND t.amount = s.amount AND t.currency = s.currency AND t.date = s.date) "
            "ORDER BY s.line"
        )
        for line, reference in cursor.fetchall():
            self._reject(line, "reference", f"{reference!r} was already posted for this client with different details")

    def _reject(self, line: int, column: str, message: str) -> None:
        self.rejected_lines.add(line)
        self.run.reject(line, column, message, self._original(line))

    def _original(self, line: int) -> list[str]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT c.email, s.kind, s.amount, s.currency, s.date, s.reference, s.notes "
                f"FROM import_transactions s JOIN {Client._meta.db_table} c ON c.id = s.client_id WHERE s.line = %s",
                [line],
            )
            row = cursor.fetchone()
        return ["" if value is None else str(value) for value in row] if row else []

    def _drop_rejected(self, cursor: Any) -> None:
        if self.rejected_lines:
            marks = ", ".join(["%s"] * len(self.rejected_lines))
            cursor.execute(f"DELETE FROM import_transactions_new WHERE line IN ({marks})", sorted(self.rejected_lines))

    def _skip_already_posted(self, cursor: Any) -> None:
        for column in ("import_key", "reference"):
            cursor.execute(
                f"DELETE FROM import_transactions_new WHERE {column} IS NOT NULL AND EXISTS (SELECT 1 FROM {TABLE} t "
                "WHERE t.client_id = import_transactions_new.client_id "
                f"AND t.{column} = import_transactions_new.{column})"
            )
            self.run.skipped += cursor.rowcount

    def _lock_clients(self, cursor: Any) -> None:
        # The same lock the services take, so that no concurrent posting slips between check and insert.
        if connection.features.has_select_for_update:
            cursor.execute(
                f"SELECT id FROM {Client._meta.db_table} WHERE id IN "
                "(SELECT DISTINCT client_id FROM import_transactions_new) ORDER BY id FOR UPDATE"
            )

    def _refuse_overdrafts(self, cursor: Any) -> None:
        """Applies the rows in date order on top of each client's current balance; none may go below zero.

        With skip_invalid the first overdrawing row of each client and currency is rejected and the check
        runs again, since a later row may be fine without it.
        """
        opening = (
            Transaction.objects.filter(client_id__in=RawSQL("SELECT client_id FROM import_transactions_new", []))
            .values("client_id", "currency")
            .annotate(balance=Sum(signed_amount()))
            .order_by()
        )
        opening_sql, opening_params = opening.query.sql_with_params()
        query = (
            f"WITH opening AS ({opening_sql}), running AS ("
            "SELECT n.line, n.kind, n.amount, n.currency, COALESCE(o.balance, 0) + SUM("
            "CASE WHEN n.kind = 'deposit' THEN n.amount ELSE -n.amount END) OVER ("
            "PARTITION BY n.client_id, n.currency ORDER BY n.date, n.line ROWS UNBOUNDED PRECEDING) AS balance, "
            "n.client_id, n.date FROM import_transactions_new n "
            "LEFT JOIN opening o ON o.client_id = n.client_id AND o.currency = n.currency), "
            "overdrawn AS (SELECT line, amount, currency, balance, ROW_NUMBER() OVER ("
            "PARTITION BY client_id, currency ORDER BY date, line) AS nth FROM running WHERE balance < 0) "
            "SELECT line, amount, currency, balance FROM overdrawn WHERE nth = 1 ORDER BY line"
        )
        while True:
            cursor.execute(query, opening_params)
            overdrawn = cursor.fetchall()
            if not overdrawn:
                return
            for line, amount, currency, balance in overdrawn:
                self._reject(
                    line,
                    "amount",
                    f"the withdrawal of {amount} {currency} would overdraw the client's cash "
                    f"(the balance would be {balance} {currency})",
                )
            if not self.run.skip_invalid:
                return
            self._drop_rejected(cursor)

    def write(self) -> None:
        now = timezone.now()
        created_by = getattr(self.run.actor, "pk", None)
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {TABLE} (client_id, kind, amount, currency, date, notes, reference, import_key, "
                "created_by_id, created_at, updated_at) SELECT client_id, kind, amount, currency, date, notes, "
                "reference, import_key, %s, %s, %s FROM import_transactions_new ORDER BY line",
                [created_by, now, now],
            )
            self.run.created += cursor.rowcount

    @classmethod
    def export_rows(cls) -> Iterator[dict[str, str]]:
        """Deposits and withdrawals as they stand: reversals, and what they reversed, cancel out and are left out."""
        movements = (
            Transaction.objects.filter(
                kind__in=Transaction.CASH_MOVEMENTS, reverses__isnull=True, reversal__isnull=True
            )
            .select_related("client")
            .order_by("date", "id")
        )
        for tx in movements.iterator(chunk_size=5000):
            yield {
                "client": tx.client.email,
                "kind": tx.kind,
                "amount": str(tx.amount),
                "currency": tx.currency,
                "date": tx.date.isoformat(),
                "reference": tx.reference or "",
                "notes": tx.notes,
            }
