"""The set-based write of an allocations import, on PostgreSQL (see holdings.importers.AllocationFormat).

Rows are parsed in one thread while the database thread writes the previous chunk (portfolio_site.imports.pipeline).
Each chunk's portfolios are locked through the services' lock (clients.services.portfolios_lock: visibility
re-checked, closed portfolios refused; held to the end) and its assets' rows shared, as `_asset_for_trade` takes
them, so no asset's currency changes under a trade settling in it. Then:

- the direct path: a row whose portfolio had no imported allocation before the run, and whose content is the first
  of its kind in the file for its portfolio, can only have the key `<content hash>:1` and clashes with nothing; it
  is copied (COPY) straight into the ledger (its settlement, the id taken from the ledger's own sequence) and into
  the allocations, in date order within its chunk;
- the checked path, for every other row (and every row of a chunk dated before what was written directly, or
  naming a refused portfolio): after the last row the rows are numbered over the whole file (content hash and
  occurrence per portfolio), those already imported left out, and the rest written with one `INSERT … SELECT`
  for the settlements and one for the allocations.

Every row is also copied into a staging table, which once both paths are done holds exactly the rows written. The
rules are then checked on what was written, by the very functions the services call after each write
(`ledger.selectors.cash_shortfalls`, `holdings.selectors.units_shortfalls`), and a broken rule is reported in the
services' own words, naming the row that broke it. With skip_invalid that row (the first of its portfolio and asset,
or portfolio and currency) is taken back out and the rules checked again, since a later row may be fine without it.

The check is on the import's end state, as for transactions: a day must close at zero or above once every row
is in. Replaying row by row (the SQLite path) is stricter in one rare case (an early buy that only a later sell
of the same file pays for, before an older withdrawal), which it refuses and this path accepts.
"""

import datetime
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from operator import itemgetter
from typing import TYPE_CHECKING, Any

from django.db import connection
from django.db.models.expressions import RawSQL
from django.utils import timezone

from clients.importers import portfolios_lock_for_import
from clients.models import Client, Portfolio
from clients.services import portfolios_history_changed
from ledger.models import Transaction
from ledger.selectors import cash_shortfalls
from ledger.services import outflow_label, overdraft_message
from portfolio_site.imports.staging import Staging, copy_text
from portfolio_site.money import (
    AMOUNT_DIGITS,
    AMOUNT_PLACES,
    QUANTITY_DIGITS,
    QUANTITY_PLACES,
    Shortfall,
    to_amount,
    to_quantity,
)

from .models import Allocation, Asset
from .selectors import units_shortfalls
from .services import short_position_message

if TYPE_CHECKING:
    from portfolio_site.imports.run import ImportRun

STAGED = "import_allocations"
NEW = "import_allocations_new"
# Every row of the file that parsed. On PostgreSQL `direct` says the row went straight into the tables with
# `import_key` (its occurrence known to be the first); the others wait for the checked path.
STAGED_COLUMNS = [
    ("line", "integer NOT NULL"),
    ("portfolio_id", "bigint NOT NULL"),
    ("client_id", "bigint NOT NULL"),
    ("asset_id", "bigint NOT NULL"),
    ("kind", "varchar(16) NOT NULL"),
    # As text: read back exactly (SQLite would turn a numeric column into floating point).
    ("quantity", "varchar(40) NOT NULL"),
    ("price", "varchar(40) NOT NULL"),
    ("fees", "varchar(40) NOT NULL"),
    ("taxes", "varchar(40) NOT NULL"),
    ("date", "date NOT NULL"),
    ("notes", "text NOT NULL"),
    ("content_hash", "varchar(64) NOT NULL"),
    # A trade's settlement as the services would post it.
    ("amount", "varchar(40)"),
    ("settlement_notes", "text NOT NULL"),
    ("currency", "varchar(3) NOT NULL"),
    ("import_key", "varchar(80)"),
    ("direct", "boolean NOT NULL"),
]
ALLOCATIONS = Allocation._meta.db_table
ASSETS = Asset._meta.db_table
CLIENTS = Client._meta.db_table
LEDGER = Transaction._meta.db_table
PORTFOLIOS = Portfolio._meta.db_table
NULL = "\\N"  # in COPY text
SETTLEMENT_COLUMNS = [
    "id",
    "client_id",
    "portfolio_id",
    "kind",
    "amount",
    "currency",
    "date",
    "notes",
    "created_by_id",
    "created_at",
    "updated_at",
    "import_batch_id",
]
ALLOCATION_COLUMNS = [
    "settlement_id",
    "client_id",
    "portfolio_id",
    "asset_id",
    "kind",
    "quantity",
    "price",
    "fees",
    "taxes",
    "date",
    "notes",
    "import_key",
    "created_at",
    "updated_at",
    "import_batch_id",
]
# A fixed-size Bloom filter (two bits a pair) of the (portfolio, content) pairs seen in this file: memory stays flat
# whatever its length, and at a million rows about one row in ten thousand is taken for a repeat it is not.
SEEN_BITS = 1 << 27
# Keys handed to one shortfall query: the `since` arrays stay a few MB however many portfolios the file holds. Each
# query reads the whole table, so as few as that allows (a million-row file of the bench has 60,000 (portfolio,
# asset) keys: one query, not three).
KEYS_PER_CHECK = 100_000
TRADES = tuple(str(kind) for kind in Allocation.TRADES)
# What a row moves, read back from the staging table's text.
AMOUNT = f"CAST(amount AS numeric({AMOUNT_DIGITS}, {AMOUNT_PLACES}))"
QUANTITY = f"CAST(quantity AS numeric({QUANTITY_DIGITS}, {QUANTITY_PLACES}))"
UNIT_DECREASES = tuple(str(kind) for kind in Allocation.DECREASES)


# The last two columns of a staged row (import_key, direct), rewritten to send the row to the checked path.
UNKEYED = re.compile(rb"\t[^\t\n]*\t[tf]\n")


def _in(values: tuple[str, ...]) -> str:
    """An SQL list of the project's own constants (never user input)."""
    return ", ".join(f"'{value}'" for value in values)


@dataclass(frozen=True)
class _Chunk:
    """A chunk as the parsing thread hands it over: every row encoded for the staging table, and its direct rows
    encoded for COPY but for the settlements' ids, which only the database thread may take from the ledger's
    sequence. (Not the rows themselves: a few chunks in flight would double the import's memory.)"""

    size: int
    portfolio_ids: set[int]
    asset_ids: set[int]
    staged: bytes  # every row, for the staging table
    settlements: list[str]  # each direct trade's settlement line after its id
    allocations: list[tuple[bool, str]]  # each direct row's allocation line after its settlement id; a trade?
    direct: int
    first_day: datetime.date
    last_day: datetime.date


class BulkAllocations:
    """The PostgreSQL path of one allocations import: the parsing thread stages each row (`import_key`,
    `encode_chunk`), the database thread writes each chunk (`write_chunk`), then `check()` and, if the run may
    write, `write()`.

    A row goes straight into the ledger and the allocations (COPY, a chunk at a time, while the next chunk is
    parsed) when it cannot clash with a row already imported: its portfolio had no imported allocation before
    the run, and its content is the first of its kind in the file for its portfolio (its key is then the
    content hash and occurrence 1, as the checked path would number it). Every other row takes the checked path
    after the last row: numbered in SQL over the whole file, rows already imported left out, written by
    `INSERT … SELECT`.
    """

    def __init__(self, run: "ImportRun", staging: Staging) -> None:
        self.run = run
        self.staging = staging
        self.indexed = False
        self.now = timezone.now()
        self.batch_id = run.batch.pk
        created_by = getattr(run.actor, "pk", None)
        self.settlement_tail = (
            f"\t{NULL if created_by is None else created_by}\t{self.now}\t{self.now}\t{self.batch_id}\n"
        )
        self.allocation_tail = f"\t{self.now}\t{self.now}\t{self.batch_id}\n"
        self.seen = bytearray(SEEN_BITS // 8)
        # A portfolio with an imported allocation before this run may already hold a row of this file.
        self.portfolios_with_keys = set(
            Allocation.objects.filter(import_key__isnull=False).values_list("portfolio_id", flat=True).distinct()
        )
        self.locked_portfolios: set[int] = set()
        self.checked_fresh: set[int] = set()  # portfolios seen without imported allocations once locked
        self.locked_assets: set[int] = set()
        # The portfolios the lock refused (the column and reason for their rows): those the actor may no longer
        # see, refused outright, and those closed, whose rows already imported still skip.
        self.hidden: dict[int, tuple[str, str]] = {}
        self.closed: dict[int, tuple[str, str]] = {}
        self.checked_rows = 0  # rows left for the checked path
        self.written_until: datetime.date | None = None  # the last day written directly
        self.ledger = Staging(LEDGER, [(name, "") for name in SETTLEMENT_COLUMNS])
        self.allocations = Staging(ALLOCATIONS, [(name, "") for name in ALLOCATION_COLUMNS])
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL work_mem = '128MB'")  # the sorts of a million rows stay in memory
            cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [LEDGER])
            (self.ledger_sequence,) = cursor.fetchone()
            # Django's foreign keys of the two tables are checked when each statement ends rather than all at the
            # commit: the same checks, but done by the database thread while the parsing thread works (deferred,
            # they took a quarter of the run, after the last row, with nothing else to do meanwhile).
            cursor.execute(
                "SELECT conname FROM pg_constraint WHERE contype = 'f' AND condeferrable AND condeferred "
                "AND conrelid IN (%s::regclass, %s::regclass) ORDER BY conname",
                [LEDGER, ALLOCATIONS],
            )
            self.deferred_keys = ", ".join(connection.ops.quote_name(name) for (name,) in cursor.fetchall())
            if self.deferred_keys:
                cursor.execute(f"SET CONSTRAINTS {self.deferred_keys} IMMEDIATE")

    def close(self) -> None:
        """Gives the foreign keys back their initial deferral, for whatever the transaction does next."""
        if self.deferred_keys:
            with connection.cursor() as cursor:
                cursor.execute(f"SET CONSTRAINTS {self.deferred_keys} DEFERRED")

    # --- the parsing thread ---------------------------------------------------------------------

    def import_key(self, portfolio_id: int, content_hash: str) -> str | None:
        """The row's import key if it is surely the first of its content for its portfolio in this file (the
        bitmap never forgets a pair, but two pairs may share a bit); None when only SQL can number it."""
        if portfolio_id in self.portfolios_with_keys:
            return None
        seen = self.seen
        first, second = hash((portfolio_id, content_hash)) % SEEN_BITS, hash((content_hash, portfolio_id)) % SEEN_BITS
        if seen[first >> 3] & (1 << (first & 7)) and seen[second >> 3] & (1 << (second & 7)):
            return None
        seen[first >> 3] |= 1 << (first & 7)
        seen[second >> 3] |= 1 << (second & 7)
        return f"{content_hash}:1"

    def encode_chunk(self, rows: list[tuple[Any, ...]]) -> _Chunk:
        """COPY text of the chunk: every row for the staging table, and the direct rows for the ledger and the
        allocations (one f-string a row: this is the hot loop of a large file)."""
        # Written in date order (then line order), as the services would record them: ids follow the dates.
        rows.sort(key=itemgetter(9, 0))
        staged, settlements, allocations = [], [], []
        portfolio_ids, asset_ids = set(), set()
        direct = 0
        allocation_tail, settlement_tail = self.allocation_tail, self.settlement_tail
        for (
            line,
            portfolio_id,
            client_id,
            asset_id,
            kind,
            qty,
            price,
            fees,
            taxes,
            date,
            notes,
            digest,
            amount,
            settles,
            currency,
            key,
        ) in rows:
            portfolio_ids.add(portfolio_id)
            asset_ids.add(asset_id)
            notes_text, settles_text = copy_text(notes), copy_text(settles)
            staged.append(
                f"{line}\t{portfolio_id}\t{client_id}\t{asset_id}\t{kind}\t{qty}\t{price}\t{fees}\t{taxes}\t{date}\t"
                f"{notes_text}\t{digest}\t{NULL if amount is None else amount}\t{settles_text}\t{currency}\t"
                f"{NULL if key is None else key}\t{'f' if key is None else 't'}\n"
            )
            if key is None:
                continue
            direct += 1
            trade = amount is not None
            if trade:
                settlements.append(
                    f"\t{client_id}\t{portfolio_id}\t{kind}\t{amount}\t{currency}\t{date}\t{settles_text}"
                    f"{settlement_tail}"
                )
            allocations.append(
                (
                    trade,
                    f"\t{client_id}\t{portfolio_id}\t{asset_id}\t{kind}\t{qty}\t{price}\t{fees}\t{taxes}\t{date}\t"
                    f"{notes_text}\t{key}{allocation_tail}",
                )
            )
        return _Chunk(
            len(rows),
            portfolio_ids,
            asset_ids,
            "".join(staged).encode(),
            settlements,
            allocations,
            direct,
            rows[0][9],
            rows[-1][9],
        )

    # --- the database thread, a chunk at a time --------------------------------------------------

    def write_chunk(self, chunk: _Chunk) -> None:
        self._lock(chunk.portfolio_ids, chunk.asset_ids)
        refused = chunk.portfolio_ids & (self.hidden.keys() | self.closed.keys())
        # A chunk dated before what was written directly would break the date order of the ids.
        ordered = self.written_until is None or chunk.first_day >= self.written_until
        if chunk.direct and ordered and not refused and not self._keyed_since(chunk.portfolio_ids):
            self._write_directly(chunk)
            self.written_until = chunk.last_day
            self.checked_rows += chunk.size - chunk.direct
            return
        # The whole chunk takes the checked path, which refuses what the lock refused.
        self.staging.write_encoded(UNKEYED.sub(rb"\t\\\\N\tf\n", chunk.staged))
        self.checked_rows += chunk.size

    def _lock(self, portfolio_ids: set[int], asset_ids: set[int]) -> None:
        """Locks the chunk's new portfolios through the services' own lock (visibility re-checked, closed ones
        refused), and its new assets' rows shared, as `_asset_for_trade` takes them, so that no asset's currency
        changes under a trade settling in it; both held to the end of the import."""
        new_portfolios = portfolio_ids - self.locked_portfolios
        if new_portfolios:
            self.locked_portfolios.update(new_portfolios)
            refused = portfolios_lock_for_import(actor=self.run.actor, portfolio_ids=new_portfolios)
            self.hidden.update(refused.hidden)
            self.closed.update(refused.closed)
        new_assets = asset_ids - self.locked_assets
        if new_assets:
            self.locked_assets.update(new_assets)
            with connection.cursor() as cursor:
                cursor.execute(
                    f"SELECT id FROM {ASSETS} WHERE id = ANY(%s) ORDER BY id FOR SHARE", [sorted(new_assets)]
                )

    def _keyed_since(self, portfolio_ids: set[int]) -> bool:
        """Whether a portfolio thought to have no imported allocation got one (another import) before this run
        locked it. Once locked, none can."""
        fresh = portfolio_ids - self.portfolios_with_keys - self.checked_fresh
        if not fresh:
            return False
        self.checked_fresh.update(fresh)
        keyed = set(
            Allocation.objects.filter(portfolio_id__in=fresh, import_key__isnull=False)
            .values_list("portfolio_id", flat=True)
            .distinct()
        )
        self.portfolios_with_keys.update(keyed)
        return bool(keyed)

    def _write_directly(self, chunk: _Chunk) -> None:
        """COPY of the chunk's direct rows straight into the ledger (settlements, their ids taken from the
        ledger's sequence) and the allocations. False, and nothing written, if a key clashes after all (a row
        imported into the portfolio by another run since this one started): the chunk then takes the checked
        path."""
        if self.run.may_write:
            with connection.cursor() as cursor:
                cursor.execute(
                    "SELECT nextval(%s::regclass) FROM generate_series(1, %s)",
                    [self.ledger_sequence, len(chunk.settlements)],
                )
                ids = [pk for (pk,) in cursor.fetchall()]
            self.ledger.write_encoded(
                "".join([f"{pk}{tail}" for pk, tail in zip(ids, chunk.settlements, strict=True)]).encode()
            )
            settlement = iter(ids)
            self.allocations.write_encoded(
                "".join(
                    [f"{next(settlement)}{tail}" if trade else f"{NULL}{tail}" for trade, tail in chunk.allocations]
                ).encode()
            )
            self.run.created += chunk.direct
        self.staging.write_encoded(chunk.staged)

    # --- check: the checked path's rows: idempotency, refused portfolios ---------------------------

    def check(self) -> None:
        with connection.cursor() as cursor:
            # First, so that nothing is said of a portfolio the actor may no longer see (not even what it holds).
            self._refuse_portfolios(cursor, STAGED, self.hidden)
            cursor.execute(f"DROP TABLE IF EXISTS {NEW}")
            # Only the rows of the checked path, numbered over the whole file.
            waiting = "FALSE"
            if self.checked_rows:
                waiting = (
                    f"(s.portfolio_id, s.content_hash) IN (SELECT portfolio_id, content_hash FROM {STAGED} "
                    "WHERE NOT direct)"
                )
            # The import key as the row-by-row path makes it (content hash and occurrence per portfolio); the rows
            # already imported are left out; each trade gets its settlement's id, in the order they are written.
            cursor.execute(
                f"CREATE TEMPORARY TABLE {NEW} AS SELECT n.*, CASE WHEN n.kind IN ({_in(TRADES)}) THEN "
                f"nextval(pg_get_serial_sequence('{LEDGER}', 'id')) END AS settlement_id FROM ("
                "SELECT k.line, k.portfolio_id, p.client_id, k.asset_id, a.currency, k.kind, "
                f"CAST(k.quantity AS numeric({QUANTITY_DIGITS}, {QUANTITY_PLACES})) AS quantity, "
                f"CAST(k.price AS numeric({QUANTITY_DIGITS}, {QUANTITY_PLACES})) AS price, "
                f"CAST(k.fees AS numeric({AMOUNT_DIGITS}, {AMOUNT_PLACES})) AS fees, "
                f"CAST(k.taxes AS numeric({AMOUNT_DIGITS}, {AMOUNT_PLACES})) AS taxes, k.date, k.notes, "
                f"CAST(k.amount AS numeric({AMOUNT_DIGITS}, {AMOUNT_PLACES})) AS amount, k.settlement_notes, "
                "k.import_key FROM (SELECT s.line, s.portfolio_id, s.asset_id, s.kind, s.quantity, s.price, "
                "s.fees, s.taxes, s.date, s.notes, s.amount, s.settlement_notes, s.direct, "
                "s.content_hash || ':' || CAST(ROW_NUMBER() OVER "
                "(PARTITION BY s.portfolio_id, s.content_hash ORDER BY s.line) AS varchar(20)) AS import_key "
                f"FROM {STAGED} s WHERE {waiting}) k JOIN {PORTFOLIOS} p ON p.id = k.portfolio_id "
                f"JOIN {ASSETS} a ON a.id = k.asset_id WHERE NOT k.direct AND NOT EXISTS (SELECT 1 FROM "
                f"{ALLOCATIONS} x WHERE x.portfolio_id = k.portfolio_id AND x.import_key = k.import_key) "
                "ORDER BY k.date, k.line) n"
            )
            created = cursor.rowcount
            if self.checked_rows:
                cursor.execute(f"SELECT COUNT(*) FROM {STAGED} WHERE NOT direct")
                self.run.skipped += cursor.fetchone()[0] - created
            # After that, so that importing a file again once its portfolio has closed still skips its rows.
            self._refuse_portfolios(cursor, NEW, self.closed)

    def _refuse_portfolios(self, cursor: Any, table: str, refused: dict[int, tuple[str, str]]) -> None:
        if not refused:
            return
        ids = list(refused)
        cursor.execute(f"SELECT line, portfolio_id FROM {table} WHERE portfolio_id = ANY(%s) ORDER BY line", [ids])
        for line, portfolio_id in cursor.fetchall():
            self.run.reject(line, *refused[portfolio_id], self._original(cursor, line))
        cursor.execute(f"DELETE FROM {table} WHERE portfolio_id = ANY(%s)", [ids])

    def _original(self, cursor: Any, line: int) -> list[str]:
        """The refused row as the file's columns hold it, for the rejects file (numbers as written in the file)."""
        cursor.execute(
            f"SELECT c.email, a.ticker, a.exchange, s.kind, s.quantity, s.price, s.fees, s.taxes, s.date, s.notes, "
            f"p.name, p.custodian, p.account_number FROM {STAGED} s JOIN {PORTFOLIOS} p ON p.id = s.portfolio_id "
            f"JOIN {CLIENTS} c ON c.id = p.client_id JOIN {ASSETS} a ON a.id = s.asset_id WHERE s.line = %s",
            [line],
        )
        row = cursor.fetchone()
        if row is None:
            return []
        return [value.isoformat() if isinstance(value, datetime.date) else str(value) for value in row]

    # --- write: two INSERT … SELECT, then the rules ------------------------------------------------

    def write(self) -> None:
        with connection.cursor() as cursor:
            if self.checked_rows:
                self._write_checked(cursor)
            self._enforce_rules(cursor)
            # As each service write does: the portfolios' derived figures are stale from the file's first day.
            cursor.execute(f"SELECT MIN(date) FROM {STAGED}")
            (first_day,) = cursor.fetchone()
        if first_day is not None:
            touched = RawSQL(f"SELECT DISTINCT portfolio_id FROM {STAGED}", [])
            portfolios_history_changed(portfolios=touched, since=first_day)

    def _write_checked(self, cursor: Any) -> None:
        """The checked path's rows, with two `INSERT … SELECT`; then the staging table holds exactly the rows
        this run wrote, each with its key, for the rules."""
        now = timezone.now()
        cursor.execute(
            f"INSERT INTO {LEDGER} (id, client_id, portfolio_id, kind, amount, currency, date, notes, "
            "created_by_id, created_at, updated_at, import_batch_id) SELECT settlement_id, client_id, "
            f"portfolio_id, kind, amount, currency, date, settlement_notes, %s, %s, %s, %s FROM {NEW} "
            "WHERE settlement_id IS NOT NULL ORDER BY date, line",
            [getattr(self.run.actor, "pk", None), now, now, self.batch_id],
        )
        cursor.execute(
            f"INSERT INTO {ALLOCATIONS} (client_id, portfolio_id, asset_id, kind, quantity, price, fees, taxes, "
            "date, notes, settlement_id, import_key, created_at, updated_at, import_batch_id) SELECT client_id, "
            "portfolio_id, asset_id, kind, quantity, price, fees, taxes, date, notes, settlement_id, import_key, "
            f"%s, %s, %s FROM {NEW} ORDER BY date, line",
            [now, now, self.batch_id],
        )
        self.run.created += cursor.rowcount
        cursor.execute(
            f"DELETE FROM {STAGED} s WHERE NOT s.direct AND NOT EXISTS (SELECT 1 FROM {NEW} n WHERE n.line = s.line)"
        )
        cursor.execute(
            f"UPDATE {STAGED} s SET import_key = n.import_key, direct = TRUE FROM {NEW} n WHERE n.line = s.line"
        )

    def _enforce_rules(self, cursor: Any) -> None:
        while True:
            refusals = self._refusals(cursor)
            for line, message in sorted(refusals.items()):
                self.run.reject(line, "quantity", message, self._original(cursor, line))
            if not refusals or not self.run.skip_invalid:
                return  # without skip_invalid a refusal fails the run, and the engine rolls everything back
            self._take_back(cursor, sorted(refusals))

    def _refusals(self, cursor: Any) -> dict[int, str]:
        """The row to blame, and the services' message, for each portfolio and currency whose cash, and each
        portfolio and asset whose units, close a day below zero. Cash first, as a trade settles before its
        units are checked: a row breaking both is refused for its cash."""
        refusals: dict[int, str] = {}
        cash = self._broken(
            cursor,
            f"SELECT portfolio_id, currency, MIN(date) FROM {STAGED} WHERE kind = 'buy' GROUP BY 1, 2 ORDER BY 1, 2",
            cash_shortfalls,
        )
        for (portfolio_id, currency), shortfall in cash.items():
            found = self._culprit(cursor, "currency", (portfolio_id, currency), shortfall, AMOUNT, ("buy",))
            if found is not None:
                line, amount, balance = found
                refusals.setdefault(
                    line,
                    overdraft_message(
                        portfolio=self._portfolio(portfolio_id),
                        currency=currency,
                        what=outflow_label(kind="buy", amount=amount, currency=currency),
                        shortfall=Shortfall(shortfall.day, to_amount(balance), shortfall.held),
                    ),
                )
        units = self._broken(
            cursor,
            f"SELECT portfolio_id, asset_id, MIN(date) FROM {STAGED} WHERE kind IN ({_in(UNIT_DECREASES)}) "
            "GROUP BY 1, 2 ORDER BY 1, 2",
            units_shortfalls,
        )
        for (portfolio_id, asset_id), shortfall in units.items():
            found = self._culprit(cursor, "asset_id", (portfolio_id, asset_id), shortfall, QUANTITY, UNIT_DECREASES)
            if found is not None:
                line, _, balance = found
                refusals.setdefault(
                    line,
                    short_position_message(
                        portfolio=self._portfolio(portfolio_id),
                        asset=Asset.objects.get(pk=asset_id),
                        shortfall=Shortfall(shortfall.day, to_quantity(balance), shortfall.held),
                    ),
                )
        return refusals

    def _broken(
        self, cursor: Any, keys_sql: str, shortfalls: Callable[..., dict[tuple[Any, Any], Shortfall]]
    ) -> dict[tuple[Any, Any], Shortfall]:
        """The shared rule (`cash_shortfalls` or `units_shortfalls`) over every key the import takes something
        from, from the first day it does: only a decrease can break the rule, and only from its own day on."""
        found: dict[tuple[Any, Any], Shortfall] = {}
        for since in self._keys(cursor, keys_sql):
            found.update(shortfalls(since=since, portfolios=sorted({portfolio_id for portfolio_id, _ in since})))
        return found

    def _keys(self, cursor: Any, keys_sql: str) -> Iterator[dict[tuple[Any, Any], datetime.date]]:
        cursor.execute(keys_sql)
        rows = cursor.fetchall()  # a few per portfolio: a few MB at most
        for start in range(0, len(rows), KEYS_PER_CHECK):
            yield {(first, second): day for first, second, day in rows[start : start + KEYS_PER_CHECK]}

    def _culprit(
        self,
        cursor: Any,
        column: str,
        key: tuple[int, Any],
        shortfall: Shortfall,
        value: str,
        decreases: tuple[str, ...],
    ) -> tuple[int, Decimal, Decimal] | None:
        """The row the services, taking the rows in date and line order, would have refused for this shortfall,
        with what it moves and the balance it would have left: on the short day, the first row after which the
        day closes below zero without the rows that follow it in the file. If none of the file's rows falls on
        that day (an older movement is what goes short), the file's last decrease before it."""
        if not self.indexed:
            cursor.execute(f"CREATE INDEX {STAGED}_key ON {STAGED} (portfolio_id, date, line)")
            self.indexed = True
        portfolio_id, other = key
        kind_filter = "amount IS NOT NULL" if column == "currency" else "TRUE"  # cash moves with trades only
        cursor.execute(
            f"SELECT line, kind, {value} FROM {STAGED} WHERE portfolio_id = %s AND {column} = %s AND date = %s "
            f"AND {kind_filter} ORDER BY line",
            [portfolio_id, other, shortfall.day],
        )
        rows = [(line, kind, amount, -amount if kind in decreases else amount) for line, kind, amount in cursor]
        after = sum((signed for *_, signed in rows), Decimal(0))
        for line, kind, amount, signed in rows:
            after -= signed
            balance = shortfall.balance - after
            if balance < 0 and kind in decreases:
                return line, amount, balance
        cursor.execute(
            f"SELECT line, {value} FROM {STAGED} WHERE portfolio_id = %s AND {column} = %s AND date < %s "
            "AND kind = ANY(%s) ORDER BY date DESC, line DESC LIMIT 1",
            [portfolio_id, other, shortfall.day, list(decreases)],
        )
        row = cursor.fetchone()
        return (row[0], row[1], shortfall.balance) if row else None

    def _portfolio(self, portfolio_id: int) -> Portfolio:
        return Portfolio.objects.select_related("client").get(pk=portfolio_id)

    def _take_back(self, cursor: Any, lines: list[int]) -> None:
        """Takes refused rows back out: their allocations, then the settlements they pointed at."""
        cursor.execute(
            f"DELETE FROM {ALLOCATIONS} a USING {STAGED} s WHERE s.line = ANY(%s) AND a.import_batch_id = %s "
            "AND a.portfolio_id = s.portfolio_id AND a.import_key = s.import_key RETURNING a.settlement_id",
            [lines, self.batch_id],
        )
        settlements = [pk for (pk,) in cursor.fetchall() if pk is not None]
        self.run.created -= cursor.rowcount
        cursor.execute(f"DELETE FROM {LEDGER} WHERE id = ANY(%s)", [settlements])
        cursor.execute(f"DELETE FROM {STAGED} WHERE line = ANY(%s)", [lines])
