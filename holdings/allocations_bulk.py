"""The set-based write of an allocations import, on PostgreSQL (see holdings.importers.AllocationFormat).

The rows wait in a staging table. Under the services' locks (the portfolios' rows through
clients.services.portfolios_lock, in primary-key order; the assets' rows shared, as `_asset_for_trade` takes
them, so no asset's currency changes under a trade settling in it), the new rows are numbered, each trade given
its settlement's id from the ledger's own sequence, and written with one `INSERT … SELECT` for the settlements
and one for the allocations. The rules are then checked on what was written, by the very functions the services
call after each write (`ledger.selectors.cash_shortfalls`, `holdings.selectors.units_shortfalls`), and a broken
rule is reported in the services' own words, naming the row that broke it. With skip_invalid that row (the first
of its portfolio and asset, or portfolio and currency) is taken back out and the rules checked again, since a
later row may be fine without it.

The check is on the import's end state, as for transactions: a day must close at zero or above once every row
is in. Replaying row by row (the SQLite path) is stricter in one rare case (an early buy that only a later sell
of the same file pays for, before an older withdrawal), which it refuses and this path accepts.
"""

import datetime
from collections.abc import Callable, Iterator
from decimal import Decimal
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
ALLOCATIONS = Allocation._meta.db_table
ASSETS = Asset._meta.db_table
CLIENTS = Client._meta.db_table
LEDGER = Transaction._meta.db_table
PORTFOLIOS = Portfolio._meta.db_table
# Keys handed to one shortfall query: the `since` arrays stay a few MB however many portfolios the file holds.
KEYS_PER_CHECK = 20_000
TRADES = tuple(str(kind) for kind in Allocation.TRADES)
UNIT_DECREASES = tuple(str(kind) for kind in Allocation.DECREASES)


def _in(values: tuple[str, ...]) -> str:
    """An SQL list of the project's own constants (never user input)."""
    return ", ".join(f"'{value}'" for value in values)


class BulkAllocations:
    """The PostgreSQL path of one allocations import: `check()` once the file is staged, `write()` if the run
    may write."""

    def __init__(self, run: "ImportRun") -> None:
        self.run = run
        self.indexed = False

    # --- check: locks, idempotency, refused portfolios ------------------------------------------

    def check(self) -> None:
        with connection.cursor() as cursor:
            cursor.execute("SET LOCAL work_mem = '128MB'")  # the sorts of a million rows stay in memory
            cursor.execute(f"SELECT DISTINCT portfolio_id FROM {STAGED}")
            refused = portfolios_lock_for_import(
                actor=self.run.actor, portfolio_ids={pk for (pk,) in cursor.fetchall()}
            )
            cursor.execute(
                f"SELECT id FROM {ASSETS} WHERE id IN (SELECT DISTINCT asset_id FROM {STAGED}) ORDER BY id FOR SHARE"
            )
            # First, so that nothing is said of a portfolio the actor may no longer see (not even what it holds).
            self._refuse_portfolios(cursor, STAGED, refused.hidden)
            cursor.execute(f"SELECT COUNT(*) FROM {STAGED}")
            staged = cursor.fetchone()[0]
            cursor.execute(f"DROP TABLE IF EXISTS {NEW}")
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
                "k.import_key FROM (SELECT s.*, s.content_hash || ':' || CAST(ROW_NUMBER() OVER "
                "(PARTITION BY s.portfolio_id, s.content_hash ORDER BY s.line) AS varchar(20)) AS import_key "
                f"FROM {STAGED} s) k JOIN {PORTFOLIOS} p ON p.id = k.portfolio_id JOIN {ASSETS} a ON a.id = k.asset_id "
                f"WHERE NOT EXISTS (SELECT 1 FROM {ALLOCATIONS} x WHERE x.portfolio_id = k.portfolio_id "
                "AND x.import_key = k.import_key) ORDER BY k.date, k.line) n"
            )
            self.run.skipped += staged - cursor.rowcount
            # After that, so that importing a file again once its portfolio has closed still skips its rows.
            self._refuse_portfolios(cursor, NEW, refused.closed)

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
        now = timezone.now()
        batch_id = self.run.batch.pk
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {LEDGER} (id, client_id, portfolio_id, kind, amount, currency, date, notes, "
                "created_by_id, created_at, updated_at, import_batch_id) SELECT settlement_id, client_id, "
                f"portfolio_id, kind, amount, currency, date, settlement_notes, %s, %s, %s, %s FROM {NEW} "
                "WHERE settlement_id IS NOT NULL ORDER BY date, line",
                [getattr(self.run.actor, "pk", None), now, now, batch_id],
            )
            cursor.execute(
                f"INSERT INTO {ALLOCATIONS} (client_id, portfolio_id, asset_id, kind, quantity, price, fees, taxes, "
                "date, notes, settlement_id, import_key, created_at, updated_at, import_batch_id) SELECT client_id, "
                "portfolio_id, asset_id, kind, quantity, price, fees, taxes, date, notes, settlement_id, import_key, "
                f"%s, %s, %s FROM {NEW} ORDER BY date, line",
                [now, now, batch_id],
            )
            self.run.created += cursor.rowcount
            self._enforce_rules(cursor)
            # As each service write does: the portfolios' derived figures are stale from the file's first day.
            cursor.execute(f"SELECT MIN(date) FROM {NEW}")
            (first_day,) = cursor.fetchone()
        if first_day is not None:
            touched = RawSQL(f"SELECT DISTINCT portfolio_id FROM {NEW}", [])
            portfolios_history_changed(portfolios=touched, since=first_day)

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
            f"SELECT portfolio_id, currency, MIN(date) FROM {NEW} WHERE kind = 'buy' GROUP BY 1, 2 ORDER BY 1, 2",
            cash_shortfalls,
        )
        for (portfolio_id, currency), shortfall in cash.items():
            found = self._culprit(cursor, "currency", (portfolio_id, currency), shortfall, "amount", ("buy",))
            if found is not None:
                line, amount, balance = found
                refusals.setdefault(
                    line,
                    overdraft_message(
                        portfolio=self._portfolio(portfolio_id),
                        currency=currency,
                        what=outflow_label(kind="buy", amount=amount, currency=currency),
                        shortfall=Shortfall(shortfall.day, to_amount(balance)),
                    ),
                )
        units = self._broken(
            cursor,
            f"SELECT portfolio_id, asset_id, MIN(date) FROM {NEW} WHERE kind IN ({_in(UNIT_DECREASES)}) "
            "GROUP BY 1, 2 ORDER BY 1, 2",
            units_shortfalls,
        )
        for (portfolio_id, asset_id), shortfall in units.items():
            found = self._culprit(cursor, "asset_id", (portfolio_id, asset_id), shortfall, "quantity", UNIT_DECREASES)
            if found is not None:
                line, _, balance = found
                refusals.setdefault(
                    line,
                    short_position_message(
                        portfolio=self._portfolio(portfolio_id),
                        asset=Asset.objects.get(pk=asset_id),
                        shortfall=Shortfall(shortfall.day, to_quantity(balance)),
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
            cursor.execute(f"CREATE INDEX {NEW}_key ON {NEW} (portfolio_id, date, line)")
            self.indexed = True
        portfolio_id, other = key
        kind_filter = "settlement_id IS NOT NULL" if column == "currency" else "TRUE"
        cursor.execute(
            f"SELECT line, kind, {value} FROM {NEW} WHERE portfolio_id = %s AND {column} = %s AND date = %s "
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
            f"SELECT line, {value} FROM {NEW} WHERE portfolio_id = %s AND {column} = %s AND date < %s "
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
            f"DELETE FROM {ALLOCATIONS} a USING {NEW} n WHERE n.line = ANY(%s) AND a.import_batch_id = %s "
            "AND a.portfolio_id = n.portfolio_id AND a.import_key = n.import_key",
            [lines, self.run.batch.pk],
        )
        self.run.created -= cursor.rowcount
        cursor.execute(
            f"DELETE FROM {LEDGER} WHERE id IN (SELECT settlement_id FROM {NEW} WHERE line = ANY(%s))", [lines]
        )
        cursor.execute(f"DELETE FROM {NEW} WHERE line = ANY(%s)", [lines])
