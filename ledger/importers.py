"""The CSV row format of directly posted cash movements (deposits, withdrawals, interest, fees, taxes, tax refunds).

Built for large files. Rows are parsed in one thread while the database thread writes the previous chunk:
each chunk is streamed into a staging table (COPY on PostgreSQL) and moved into the ledger set-based,
skipping rows already posted (by reference, or by `import_key`: a hash of the row and of its occurrence
in the file). Once every row is in, the running balance of each portfolio and currency is checked in date
order on top of the balance before the import; one overdraft and the engine rolls the whole file back.

Cash is per portfolio: a row names its portfolio (see clients.importers.PortfolioIndex), the portfolio rows are
locked through the services' own lock (clients.services.portfolios_lock: visibility re-checked inside the
transaction, closed portfolios refused), and references and import keys are unique per portfolio. Every row the
run posts carries its batch (`import_batch_id`), which is also how the run tells its own rows from earlier ones.
"""

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import Q, QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from clients.importers import CLIENT_COLUMN, PORTFOLIO_COLUMNS, PortfolioIndex, portfolios_lock_for_import
from clients.models import Client, Portfolio
from clients.services import portfolios_history_changed
from portfolio_site.imports import parsing
from portfolio_site.imports.formats import Column, PipelinedFormat, register
from portfolio_site.imports.staging import Staging, copy_text, staged_date
from portfolio_site.models import NOTES_MAX_LENGTH
from portfolio_site.money import AMOUNT_DIGITS, AMOUNT_PLACES, Shortfall, to_amount

from .models import Transaction
from .selectors import cash_shortfalls
from .services import outflow_label, overdraft_message

TABLE = Transaction._meta.db_table
NULL = "\\N"  # in COPY text
CLIENTS = Client._meta.db_table
PORTFOLIOS = Portfolio._meta.db_table
CHUNK = "import_tx_chunk"
ROWS = "import_tx_rows"
# A fixed-size bitmap of row hashes seen in this file: memory stays flat whatever the file's length. A set
# bit may be another row's (a collision), so a row whose bit is set is counted exactly in `repeats`.
SEEN_BITS = 1 << 27
DIRECT_OUTFLOWS = [str(kind) for kind in Transaction.DIRECT if kind in Transaction.OUTFLOWS]
ROW_COLUMNS = [
    ("line", "integer NOT NULL"),
    ("client_id", "bigint NOT NULL"),
    ("portfolio_id", "bigint NOT NULL"),
    ("kind", "varchar(16) NOT NULL"),
    ("amount", f"numeric({AMOUNT_DIGITS}, {AMOUNT_PLACES}) NOT NULL"),
    ("currency", "varchar(3) NOT NULL"),
    ("date", "date NOT NULL"),
    ("reference", "varchar(100)"),
    ("import_key", "varchar(80)"),
]


class _Occurrences:
    """How many times a row's content occurred earlier in the file, in flat memory."""

    def __init__(self) -> None:
        self.bitmap = bytearray(SEEN_BITS // 8)
        self.repeats: dict[bytes, int] = {}

    def next(self, digest: bytes) -> int:
        index = int.from_bytes(digest[:8], "big") % SEEN_BITS
        byte, bit = divmod(index, 8)
        if not self.bitmap[byte] & (1 << bit):
            self.bitmap[byte] |= 1 << bit
            return 1
        # Seen before, or a collision: either way a number no other row of this file gets, and the same
        # number on every run of the same file, which is all the key needs.
        count = self.repeats.get(digest, 1) + 1
        self.repeats[digest] = count
        return count


LEDGER_COLUMNS = [
    "client_id",
    "portfolio_id",
    "kind",
    "amount",
    "currency",
    "date",
    "reference",
    "import_key",
    "notes",
    "created_by_id",
    "created_at",
    "updated_at",
    "import_batch_id",
]


@dataclass(frozen=True)
class _Chunk:
    """A chunk as the parsing thread hands it over, encoded for COPY straight into the ledger (and the rows
    table), with the rows themselves for the checked path."""

    rows: list[tuple[Any, ...]]
    portfolio_ids: set[int]
    direct: Any
    lines: Any


@contextmanager
def _index_lookups(cursor: Any) -> Iterator[None]:
    """Makes PostgreSQL look each chunk row up in the ledger's unique indexes.

    Its statistics still describe the ledger as it was before the import, so it would otherwise hash or
    sort the whole (growing) ledger for every chunk: quadratic in the file's length.
    """
    if connection.vendor != "postgresql":
        yield
        return
    cursor.execute("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off")
    try:
        yield
    finally:
        cursor.execute("SET LOCAL enable_hashjoin = on; SET LOCAL enable_mergejoin = on")


@register
class TransactionFormat(PipelinedFormat):
    kind = "transactions"
    model = Transaction
    permissions = ("ledger.add_transaction",)
    description = (
        "deposits, withdrawals, interest, fees, taxes and tax refunds in clients' portfolios. A row names its "
        "portfolio by client and portfolio "
        "name, or by custodian and account number; a row naming only the client goes to the client's single "
        "portfolio. A row with a reference posts once per portfolio and reference; a row without one posts once "
        "per identical row (its content and how often it occurs in the file). Rows are applied in date order and "
        "none may overdraw its portfolio's cash in its currency; a closed portfolio takes no new rows."
    )
    columns = (
        CLIENT_COLUMN,
        Column(
            "kind",
            parsing.choice(Transaction.DIRECT),
            help="deposit, withdrawal, interest, fee, tax or tax_refund (dividends are imported as dividends)",
        ),
        Column(
            "amount",
            parsing.decimal(max_digits=AMOUNT_DIGITS, places=AMOUNT_PLACES, minimum="0", exclusive=True),
            help=f"positive, up to {AMOUNT_PLACES} decimal places",
        ),
        Column("currency", parsing.currency, help="ISO 4217 code"),
        Column("date", parsing.iso_date, help="value date, YYYY-MM-DD"),
        Column("reference", parsing.text(100), required=False, help="external id, unique per portfolio"),
        Column("notes", parsing.text(NOTES_MAX_LENGTH), required=False, help="free text"),
        *PORTFOLIO_COLUMNS,
    )

    def prepare(self) -> None:
        # Only the portfolios of clients the actor may see can be named; the rest read as unknown.
        self.portfolios = PortfolioIndex(self.run.actor)
        self.occurrences = _Occurrences()
        self.now = timezone.now()
        self.now_db = connection.ops.adapt_datetimefield_value(self.now)
        # Every row this run posts carries it: provenance, and how this run's rows are told from earlier ones.
        self.batch_id = self.run.batch.pk
        self.locked: set[int] = set()
        # The portfolios the lock refused (the column and reason for their rows), checked under the lock: those
        # the actor may no longer see, refused outright, and those closed, whose rows already posted still skip.
        self.hidden: dict[int, tuple[str, str]] = {}
        self.closed: dict[int, tuple[str, str]] = {}
        # The chunk being written, and every row of the file (less its notes) for the final balance check.
        self.chunk = Staging(CHUNK, [*ROW_COLUMNS, ("notes", "text NOT NULL")])
        self.rows = Staging(ROWS, ROW_COLUMNS).create()
        self.ledger = Staging(TABLE, [(name, "") for name in LEDGER_COLUMNS])
        # A portfolio none of whose earlier transactions has a reference or import key cannot clash with a
        # row of this file: its rows may go straight into the ledger (the fast path).
        self.portfolios_with_keys = set(
            Transaction.objects.filter(Q(reference__isnull=False) | Q(import_key__isnull=False))
            .values_list("portfolio_id", flat=True)
            .distinct()
        )
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL work_mem = '128MB'")  # sorts of a million rows stay in memory

    def stage(self, line: int, values: dict[str, Any]) -> tuple[Any, ...]:
        portfolio = self.portfolios.resolve(values)
        notes = values["notes"] or ""
        import_key = None
        if values["reference"] is None:
            content = (
                f"{portfolio.key_owner}\x1f{values['kind']}\x1f{values['amount'].normalize()}\x1f{values['currency']}"
            )
            digest = hashlib.sha256(f"{content}\x1f{values['date']}\x1f{notes}".encode()).digest()
            # Occurrences are counted per portfolio, as keys are unique per portfolio.
            occurrence = self.occurrences.next(hashlib.sha256(digest + portfolio.id.to_bytes(8, "big")).digest())
            import_key = f"{digest[:20].hex()}:{occurrence}"
        return (
            line,
            portfolio.client_id,
            portfolio.id,
            values["kind"],
            values["amount"],
            values["currency"],
            values["date"],
            values["reference"],
            import_key,
            notes,
        )

    def encode_chunk(self, rows: list[tuple[Any, ...]]) -> "_Chunk":
        portfolio_ids = {row[2] for row in rows}
        created_by = getattr(self.run.actor, "pk", None)
        if not self.ledger.postgres:
            direct = self.ledger.encode(
                [(*row[1:], created_by, self.now_db, self.now_db, self.batch_id) for row in rows]
            )
            return _Chunk(rows, portfolio_ids, direct, self.rows.encode([row[:-1] for row in rows]))
        # The hot loop of a large import: COPY text for the ledger and for the rows table in one pass, with
        # the escaping only the free-text fields can need.
        tail = f"\t{NULL if created_by is None else created_by}\t{self.now}\t{self.now}\t{self.batch_id}\n"
        direct_lines, row_lines = [], []
        for line, client_id, portfolio_id, kind, amount, currency, date, reference, import_key, notes in rows:
            common = (
                f"{client_id}\t{portfolio_id}\t{kind}\t{amount}\t{currency}\t{date}\t"
                f"{NULL if reference is None else copy_text(reference)}\t{import_key or NULL}"
            )
            direct_lines.append(f"{common}\t{copy_text(notes)}{tail}")
            row_lines.append(f"{line}\t{common}\n")
        return _Chunk(rows, portfolio_ids, "".join(direct_lines).encode(), "".join(row_lines).encode())

    def write_chunk(self, chunk: "_Chunk") -> None:
        with connection.cursor() as cursor, _index_lookups(cursor):
            self._lock_portfolios(chunk.portfolio_ids)
            checked = self.portfolios_with_keys.union(self.hidden, self.closed)
            if not chunk.portfolio_ids & checked and self._write_directly(chunk):
                return
            self.chunk.create().write_encoded(self.chunk.encode(chunk.rows))
            # First, so that nothing is said of a portfolio the actor may not see (not even its references).
            if chunk.portfolio_ids & self.hidden.keys():
                self._refuse_portfolios(cursor, self.hidden)
            self._refuse_reference_clashes(cursor)
            # Rows already posted leave the chunk before the rows table sees them: the balance check
            # must count only what this run adds on top of the balance before it.
            self.run.skipped += self._drop_already_posted(cursor)
            # After that, so that importing a file again once its portfolio has closed still skips it.
            if chunk.portfolio_ids & self.closed.keys():
                self._refuse_portfolios(cursor, self.closed)
            if self.run.may_write:  # a failed run still checks every row, to report every problem
                self.run.created += self._post(cursor)
            cursor.execute(f"INSERT INTO {ROWS} SELECT {', '.join(name for name, _ in ROW_COLUMNS)} FROM {CHUNK}")

    def _write_directly(self, chunk: "_Chunk") -> bool:
        """The fast path, for portfolios with nothing posted by reference or import key before this run: COPY
        straight into the ledger. False (and nothing written) when a reference repeats within the file: the
        checked path then finds and reports it."""
        try:
            with transaction.atomic():
                if self.run.may_write:
                    self.ledger.write_encoded(chunk.direct)
                self.rows.write_encoded(chunk.lines)
        except IntegrityError:
            return False
        if self.run.may_write:
            self.run.created += len(chunk.rows)
        return True

    def _drop_already_posted(self, cursor: Any) -> int:
        """Takes out of the chunk the rows an earlier run posted (same import key, or same reference with the
        same details: other details were refused as clashes); returns how many."""
        dropped = 0
        for column in ("import_key", "reference"):
            cursor.execute(
                f"DELETE FROM {CHUNK} WHERE {column} IS NOT NULL AND EXISTS (SELECT 1 FROM {TABLE} t "
                f"WHERE t.portfolio_id = {CHUNK}.portfolio_id AND t.{column} = {CHUNK}.{column})"
            )
            dropped += int(cursor.rowcount)
        return dropped

    def _post(self, cursor: Any) -> int:
        """Moves what is left of the chunk into the ledger, in file order."""
        cursor.execute(
            f"INSERT INTO {TABLE} (client_id, portfolio_id, kind, amount, currency, date, notes, reference, "
            "import_key, created_by_id, created_at, updated_at, import_batch_id) SELECT client_id, portfolio_id, "
            "kind, amount, currency, date, notes, "
            f"reference, import_key, %s, %s, %s, %s FROM {CHUNK} ORDER BY line",
            [getattr(self.run.actor, "pk", None), self.now_db, self.now_db, self.batch_id],
        )
        return int(cursor.rowcount)

    def _lock_portfolios(self, portfolio_ids: set[int]) -> None:
        """Locks the chunk's new portfolios through the services' own lock, held to the end: no posting slips
        between check and commit, no portfolio closes in between, and a portfolio whose client the actor may no
        longer see (reassigned since the file was read) is refused, as any write of the services would be."""
        new = portfolio_ids - self.locked
        if not new:
            return
        self.locked.update(new)
        refused = portfolios_lock_for_import(actor=self.run.actor, portfolio_ids=new)
        self.hidden.update(refused.hidden)
        self.closed.update(refused.closed)

    def _refuse_portfolios(self, cursor: Any, refused: dict[int, tuple[str, str]]) -> None:
        """Refuses the chunk's rows in the portfolios the lock refused."""
        marks = ", ".join(["%s"] * len(refused))
        cursor.execute(
            f"SELECT line, portfolio_id FROM {CHUNK} WHERE portfolio_id IN ({marks}) ORDER BY line", list(refused)
        )
        rows = cursor.fetchall()
        for line, portfolio_id in rows:
            self.run.reject(line, *refused[portfolio_id], self._original(cursor, line))
        if rows:
            marks = ", ".join(["%s"] * len(rows))
            cursor.execute(f"DELETE FROM {CHUNK} WHERE line IN ({marks})", [line for line, _ in rows])

    def _refuse_reference_clashes(self, cursor: Any) -> None:
        """Refuses a reference repeated in the file or already posted with other details."""
        cursor.execute(
            f"SELECT line, reference, first_line FROM (SELECT line, reference, MIN(line) OVER "
            f"(PARTITION BY portfolio_id, reference) AS first_line FROM {CHUNK} WHERE reference IS NOT NULL) repeated "
            "WHERE line <> first_line"
        )
        clashes = [
            (line, "reference", f"{reference!r} is used on line {first} for the same portfolio too")
            for line, reference, first in cursor.fetchall()
        ]
        # Against the ledger: a row of an earlier chunk (posted by this run), or one posted before it.
        cursor.execute(
            f"SELECT c.line, c.reference, (SELECT MIN(r.line) FROM {ROWS} r WHERE r.portfolio_id = c.portfolio_id "
            f"AND r.reference = c.reference) FROM {CHUNK} c JOIN {TABLE} t "
            "ON t.portfolio_id = c.portfolio_id AND t.reference = c.reference "
            "WHERE t.import_batch_id = %s OR NOT (t.kind = c.kind AND t.amount = c.amount "
            "AND t.currency = c.currency AND t.date = c.date)",
            [self.batch_id],
        )
        for line, reference, first in cursor.fetchall():
            if first is not None:
                message = f"{reference!r} is used on line {first} for the same portfolio too"
            else:
                message = f"{reference!r} was already posted in this portfolio with different details"
            clashes.append((line, "reference", message))
        for line, column, message in sorted(clashes):
            self.run.reject(line, column, message, self._original(cursor, line))
        if clashes:
            marks = ", ".join(["%s"] * len(clashes))
            cursor.execute(f"DELETE FROM {CHUNK} WHERE line IN ({marks})", [line for line, _, _ in clashes])

    def _original(self, cursor: Any, line: int, table: str = CHUNK) -> list[str]:
        """The refused row, for the rejects file, as staged (the notes are not kept past the chunk)."""
        notes = "s.notes" if table == CHUNK else "''"
        cursor.execute(
            f"SELECT c.email, s.kind, s.amount, s.currency, s.date, s.reference, {notes}, p.name, p.custodian, "
            f"p.account_number FROM {table} s JOIN {CLIENTS} c ON c.id = s.client_id "
            f"JOIN {PORTFOLIOS} p ON p.id = s.portfolio_id WHERE s.line = %s",
            [line],
        )
        row = cursor.fetchone()
        return ["" if value is None else str(value) for value in row] if row else []

    # --- After the last row ---------------------------------------------------------------------

    def check(self) -> None:
        """The services' cash rule on what the file added: no portfolio's cash in any currency closes a day below
        zero from the file's first row for it on, the rows already in the ledger counted on their days
        (`ledger.selectors.cash_shortfalls`, set-based). The row blamed for a negative day is the file's last
        outflow (withdrawal, fee or tax) in that portfolio and currency on or before it.

        With skip_invalid that row is taken out again and the check repeats, since a later row may be fine
        without it.
        """
        with connection.cursor() as cursor:
            while True:
                cursor.execute(f"SELECT portfolio_id, currency, MIN(date) FROM {ROWS} GROUP BY portfolio_id, currency")
                since = {
                    (portfolio_id, currency): staged_date(day) for portfolio_id, currency, day in cursor.fetchall()
                }
                touched = RawSQL(f"SELECT DISTINCT portfolio_id FROM {ROWS}", [])
                shortfalls = cash_shortfalls(since=since, portfolios=touched)
                lines = [
                    self._refuse_overdraft(cursor, key, shortfall) for key, shortfall in sorted(shortfalls.items())
                ]
                if not shortfalls or not self.run.skip_invalid:
                    return
                self._take_back(cursor, [line for line in lines if line is not None])

    def _refuse_overdraft(self, cursor: Any, key: tuple[int, str], shortfall: Shortfall) -> int | None:
        portfolio_id, currency = key
        cursor.execute(
            f"SELECT r.line, r.kind, r.amount, p.name FROM {ROWS} r JOIN {PORTFOLIOS} p ON p.id = r.portfolio_id "
            f"WHERE r.portfolio_id = %s AND r.currency = %s AND r.kind IN ({', '.join(['%s'] * len(DIRECT_OUTFLOWS))}) "
            "AND r.date <= %s ORDER BY r.date DESC, r.line DESC LIMIT 1",
            [portfolio_id, currency, *DIRECT_OUTFLOWS, shortfall.day],
        )
        found = cursor.fetchone()
        if found is None:  # the ledger was already short before this file; its first row for the portfolio says so
            cursor.execute(
                f"SELECT r.line, r.kind, r.amount, p.name FROM {ROWS} r JOIN {PORTFOLIOS} p ON p.id = r.portfolio_id "
                "WHERE r.portfolio_id = %s AND r.currency = %s ORDER BY r.date, r.line LIMIT 1",
                [portfolio_id, currency],
            )
            found = cursor.fetchone()
        line, kind, amount, _ = found
        # A file whose portfolio was short before it blames its first row, named as the outflow it deepens.
        kind = kind if kind in DIRECT_OUTFLOWS else Transaction.Kind.WITHDRAWAL
        what = outflow_label(kind=kind, amount=to_amount(Decimal(str(amount))), currency=currency)
        portfolio = Portfolio.objects.get(pk=portfolio_id)
        message = overdraft_message(portfolio=portfolio, what=what, currency=currency, shortfall=shortfall)
        self.run.reject(line, "amount", message, self._original(cursor, line, ROWS))
        return int(line)

    def _take_back(self, cursor: Any, lines: list[int]) -> None:
        marks = ", ".join(["%s"] * len(lines))
        cursor.execute(
            f"DELETE FROM {TABLE} WHERE import_batch_id = %s AND id IN (SELECT t.id FROM {TABLE} t JOIN {ROWS} r "
            "ON t.portfolio_id = r.portfolio_id AND (t.import_key = r.import_key OR t.reference = r.reference) "
            f"WHERE r.line IN ({marks}))",
            [self.batch_id, *lines],
        )
        self.run.created -= cursor.rowcount
        cursor.execute(f"DELETE FROM {ROWS} WHERE line IN ({marks})", lines)

    def write(self) -> None:
        """The chunks were written as they came (and are rolled back if the run fails): what is left is to mark
        the portfolios the file touched as changed from its first day, as the services do for each write."""
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT MIN(date) FROM {ROWS}")
            (first_day,) = cursor.fetchone()
        if first_day is not None:
            touched = RawSQL(f"SELECT DISTINCT portfolio_id FROM {ROWS}", [])
            portfolios_history_changed(portfolios=touched, since=staged_date(first_day))

    def close(self) -> None:
        try:
            self.chunk.drop()
            self.rows.drop()
        except DatabaseError:
            # The run is already failing on a database error (which propagates); the rollback drops the tables.
            pass

    @classmethod
    def exported(cls, rows: QuerySet[Transaction]) -> QuerySet[Transaction]:
        """Directly posted movements as they stand: reversals, and what they reversed, cancel out and are left
        out (trade settlements and dividends' cash come back with their trades and dividends)."""
        return (
            rows.filter(kind__in=Transaction.DIRECT, reverses__isnull=True, reversal__isnull=True)
            .select_related("client", "portfolio")
            .order_by("date", "id")
        )

    @classmethod
    def export_row(cls, tx: Transaction) -> dict[str, str]:
        return {
            "client": tx.client.email,
            "portfolio": tx.portfolio.name,
            "custodian": tx.portfolio.custodian,
            "account_number": tx.portfolio.account_number,
            "kind": tx.kind,
            "amount": str(tx.amount),
            "currency": tx.currency,
            "date": tx.date.isoformat(),
            "reference": tx.reference or "",
            "notes": tx.notes,
        }
