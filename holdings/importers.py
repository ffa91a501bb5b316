"""The CSV row formats of assets, prices, allocations and dividends for the import engine.

Rows name an asset by ticker and exchange; the exchange may be left empty when only one asset has the ticker.
Assets are upserted in batches (one query per batch for the existing ones); prices and allocations stream into
a staging table (COPY on PostgreSQL), so memory stays flat however long the file. Prices are then checked and
written set-based. Allocations are parsed in a second thread and, on PostgreSQL, written set-based a chunk at a time
while the next is parsed (holdings.allocations_bulk: COPY of the rows that cannot clash with an earlier import, one
`INSERT … SELECT` per table for the others, then the services' own cash and units rules over what was written),
thousands of rows a second; on SQLite, where that would buy little, they are replayed in date order through
`allocation_create` (tens of rows a second), exactly as the API records them. Either way each buy and sell
settles in cash, and none may overdraw cash or sell more than is held. Dividends, a few per holding and year,
go through the dividend services row by row.
"""

import contextlib
import datetime
import hashlib
from collections import defaultdict
from collections.abc import Callable, Hashable
from contextlib import nullcontext
from decimal import Decimal
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.db import DatabaseError, connection, transaction
from django.db.models import QuerySet
from django.db.models.expressions import RawSQL
from django.utils import timezone

from clients.importers import CLIENT_COLUMN, PORTFOLIO_COLUMNS, PortfolioIndex, portfolios_lock_for_import
from clients.models import Portfolio
from clients.services import portfolios_history_changed
from portfolio_site.cache import invalidate_namespace
from portfolio_site.errors import ConflictError
from portfolio_site.imports import parsing
from portfolio_site.imports.formats import Column, ImportFormat, PipelinedFormat, RowError, register
from portfolio_site.imports.staging import Staging, staged_date
from portfolio_site.imports.upsert import PendingRow, UpsertFormat, cells, validation_messages
from portfolio_site.models import NOTES_MAX_LENGTH
from portfolio_site.money import AMOUNT_DIGITS, AMOUNT_PLACES, QUANTITY_DIGITS, QUANTITY_PLACES

from .allocations_bulk import NEW, STAGED, STAGED_COLUMNS, BulkAllocations
from .dividends import dividend_create, dividend_update
from .models import Allocation, Asset, AssetType, Dividend, FxRate, Price, Split
from .services import (
    ASSET_CURRENCY_FIXED,
    ASSETS_CACHE,
    FX_RATES_CACHE,
    PRICES_CACHE,
    allocation_create,
    settlement_notes,
    split_create,
    split_update,
    trade_cash,
)

PAGE_ROWS = 1000
ASSET_FIELDS = ("name", "currency", "asset_type", "isin", "lot_size")
ASSETS = Asset._meta.db_table
PRICES = Price._meta.db_table
ALLOCATIONS = Allocation._meta.db_table


def upper_text(max_length: int) -> Callable[[str], str]:
    check = parsing.text(max_length)

    def parse(value: str) -> str:
        return check(value).upper()

    return parse


def quantity(*, minimum: str, exclusive: bool) -> Callable[[str], Decimal]:
    return parsing.decimal(max_digits=QUANTITY_DIGITS, places=QUANTITY_PLACES, minimum=minimum, exclusive=exclusive)


def plain(value: Decimal) -> str:
    """A decimal as a person writes it: no trailing zeros, never in exponent notation (str() writes 1E-10)."""
    return format(value.normalize(), "f")


TICKER = Column("ticker", upper_text(32), help="the asset's ticker")
EXCHANGE = Column(
    "exchange", upper_text(16), required=False, help="the asset's exchange code; may be empty when the ticker is unique"
)


class AssetIndex:
    """Every asset's id by ticker and exchange, loaded once (assets are reference data: thousands, not millions)."""

    def __init__(self) -> None:
        self.by_ticker: dict[str, dict[str, int]] = defaultdict(dict)
        # How each asset reads in text (its __str__), for the notes of the settlements the rows make.
        self.labels: dict[int, str] = {}
        # What the rows' settlements are in (a trade settles in its asset's currency).
        self.currencies: dict[int, str] = {}
        for pk, ticker, exchange, currency in (
            Asset.objects.order_by().values_list("pk", "ticker", "exchange", "currency").iterator()
        ):
            self.by_ticker[ticker][exchange] = pk
            self.labels[pk] = str(Asset(ticker=ticker, exchange=exchange))
            self.currencies[pk] = currency

    def resolve(self, ticker: str, exchange: str | None) -> int:
        listings = self.by_ticker.get(ticker, {})
        if not listings:
            raise RowError("ticker", f"no asset with the ticker {ticker}")
        if exchange is not None:
            if exchange not in listings:
                raise RowError("exchange", f"no asset {ticker} on {exchange} (it is on {_exchanges(listings)})")
            return listings[exchange]
        if len(listings) > 1:
            raise RowError(
                "exchange", f"the ticker {ticker} is on several exchanges ({_exchanges(listings)}): name the exchange"
            )
        return next(iter(listings.values()))


def _exchanges(listings: dict[str, int]) -> str:
    return ", ".join(sorted(exchange or "no exchange" for exchange in listings))


def _close(staging: Staging, *tables: str) -> None:
    """Ends the staging stream and drops the staging table and the other temporary tables a format made."""
    try:
        staging.close()
        with connection.cursor() as cursor:
            for table in (staging.name, *tables):
                cursor.execute(f"DROP TABLE IF EXISTS {table}")
    except DatabaseError:
        # The run is already failing on a database error (which propagates); the rollback drops the tables.
        pass


# --- Assets --------------------------------------------------------------------------------------


@register
class AssetFormat(UpsertFormat):
    kind = "assets"
    permissions = ("holdings.add_asset", "holdings.change_asset")
    description = (
        "securities and other instruments, created or updated by ticker and exchange (the row is the whole "
        "record). The currency of an asset that has allocations cannot change."
    )
    columns = (
        TICKER,
        Column("exchange", upper_text(16), required=False, help="exchange code (e.g. a MIC); empty for none"),
        Column("name", parsing.text(200), help="the asset's name"),
        Column("currency", parsing.currency, help="ISO 4217 code it is quoted in"),
        Column("asset_type", parsing.choice(AssetType.values), help=", ".join(AssetType.values)),
        Column("isin", upper_text(12), required=False, help="ISIN, unique among assets"),
        Column(
            "lot_size",
            parsing.decimal(max_digits=QUANTITY_DIGITS, places=QUANTITY_PLACES, minimum="0", exclusive=True),
            required=False,
            help="units per lot, above 0; empty (or no such column): the asset's current lot size, 1 for a new one",
        ),
    )
    model = Asset
    compared = saved = ASSET_FIELDS
    # As asset_update does: prices show their asset.
    cache_namespaces = (ASSETS_CACHE, PRICES_CACHE)

    def prepare(self) -> None:
        super().prepare()
        self.seen: dict[tuple[str, str], int] = {}
        self.seen_isins: dict[str, int] = {}
        self.lot_size_kept: set[int] = set()

    def build(self, line: int, values: dict[str, Any]) -> Asset:
        key = (values["ticker"], values["exchange"] or "")
        if key in self.seen:
            raise RowError("ticker", f"{_label(*key)} is already on line {self.seen[key]}")
        isin = values["isin"] or ""
        if isin and isin in self.seen_isins:
            raise RowError("isin", f"{isin} is already on line {self.seen_isins[isin]}")
        self.seen[key] = line
        if isin:
            self.seen_isins[isin] = line
        asset = Asset(
            ticker=key[0],
            exchange=key[1],
            name=values["name"],
            currency=values["currency"],
            asset_type=values["asset_type"],
            isin=isin,
            lot_size=values.get("lot_size") or Decimal("1"),
        )
        if values.get("lot_size") is None:
            # An empty cell (or a file from before the column) keeps a known asset's lot size: see existing().
            self.lot_size_kept.add(id(asset))
        return asset

    def natural_key(self, instance: Asset) -> tuple[str, str]:
        return instance.ticker, instance.exchange

    def existing(self, rows: list[PendingRow]) -> dict[Hashable, Any]:
        existing: dict[Hashable, Any] = {
            (asset.ticker, asset.exchange): asset
            for asset in self.locked(Asset.objects.filter(ticker__in={row.instance.ticker for row in rows}))
        }
        # What refusal() needs to know of the batch, fetched once for all of it.
        self.isin_holders = {
            isin: (ticker, exchange)
            for isin, ticker, exchange in Asset.objects.filter(
                isin__in={row.instance.isin for row in rows if row.instance.isin}
            ).values_list("isin", "ticker", "exchange")
        }
        currency_changes = [
            old.pk
            for row in rows
            if (old := existing.get(self.natural_key(row.instance))) and old.currency != row.instance.currency
        ]
        self.allocated = set(
            Allocation.objects.filter(asset_id__in=currency_changes).values_list("asset_id", flat=True).distinct()
        )
        for row in rows:
            if id(row.instance) in self.lot_size_kept and (old := existing.get(self.natural_key(row.instance))):
                row.instance.lot_size = old.lot_size
        return existing

    def refusal(self, row: PendingRow, old: Asset | None) -> tuple[str, str] | None:
        new = row.instance
        holder = self.isin_holders.get(new.isin)
        if holder is not None and holder != self.natural_key(new):
            return "isin", f"{new.isin} is the ISIN of the asset {_label(*holder)}"
        if old is not None and old.pk in self.allocated and old.currency != new.currency:
            return "currency", ASSET_CURRENCY_FIXED
        return None

    @classmethod
    def exported(cls, rows: QuerySet[Asset]) -> QuerySet[Asset]:
        return rows.order_by("ticker", "exchange")

    @classmethod
    def export_row(cls, asset: Asset) -> dict[str, str]:
        return {
            "ticker": asset.ticker,
            "exchange": asset.exchange,
            "name": asset.name,
            "currency": asset.currency,
            "asset_type": asset.asset_type,
            "isin": asset.isin,
            "lot_size": f"{asset.lot_size.normalize():f}",
        }


def _label(ticker: str, exchange: str) -> str:
    return f"{ticker} on {exchange}" if exchange else f"{ticker} (no exchange)"


# --- Prices --------------------------------------------------------------------------------------


class DatedSeriesFormat(ImportFormat):
    """A series of one value per key and day (prices per asset, rates per currency pair), imported set-based:
    each row is created, updated when its value changed, or skipped when identical. Repeated (key, day) pairs
    are found by SQL over the staging table, not by a set in memory.

    A kind names its `table`, staging table, key columns and value column, how a row is staged (`stage_row`),
    how a repeated row is worded (`repeated`), and which portfolios the change makes stale (`mark_stale`).
    """

    table: str
    staging_name: str
    keys: tuple[tuple[str, str], ...]  # (column, SQL type) of the key, before the date
    value: str

    def prepare(self) -> None:
        self.staging = Staging(
            self.staging_name,
            [
                ("line", "integer NOT NULL"),
                *self.keys,
                ("date", "date NOT NULL"),
                (self.value, f"numeric({QUANTITY_DIGITS}, {QUANTITY_PLACES}) NOT NULL"),
            ],
        ).__enter__()

    def stage_row(self, values: dict[str, Any]) -> tuple[Any, ...]:
        """The row's key values, as the staging table's key columns hold them."""
        raise NotImplementedError

    def repeated(
        self, cursor: Any, key: tuple[Any, ...], day: datetime.date, value: Decimal, first_line: int
    ) -> tuple[str, list[str]]:
        """The message for a (key, day) already on `first_line`, and the row's cells for the rejects file."""
        raise NotImplementedError

    def mark_stale(self, since: datetime.date) -> None:
        """Marks the portfolios whose history the written rows change, from `since` on."""
        raise NotImplementedError

    def add(self, line: int, values: dict[str, Any]) -> None:
        self.staging.add((line, *self.stage_row(values), values["date"], values[self.value]))

    def close(self) -> None:
        _close(self.staging)

    def _same(self, left: str, right: str) -> str:
        return " AND ".join(f"{left}.{column} = {right}.{column}" for column in (*self._key_names(), "date"))

    def _key_names(self) -> tuple[str, ...]:
        return tuple(column for column, _ in self.keys)

    def check(self) -> None:
        self.staging.close()
        names, staged = ", ".join(self._key_names()), self.staging_name
        with connection.cursor() as cursor:
            cursor.execute(f"CREATE INDEX {staged}_key ON {staged} ({names}, date, line)")
            cursor.execute(
                f"SELECT line, {names}, date, {self.value}, first_line FROM (SELECT line, {names}, date, {self.value}, "
                f"MIN(line) OVER (PARTITION BY {names}, date) AS first_line FROM {staged}) d "
                "WHERE line <> first_line ORDER BY line"
            )
            width = len(self.keys)
            while rows := cursor.fetchmany(PAGE_ROWS):
                for line, *rest in rows:
                    key, (day, value, first_line) = tuple(rest[:width]), rest[width:]
                    message, cells = self.repeated(cursor, key, staged_date(day), Decimal(str(value)), first_line)
                    self.run.reject(line, "date", message, cells)
            # With skip_invalid the first row of a (key, day) is written; without, nothing is.
            cursor.execute(
                f"DELETE FROM {staged} WHERE EXISTS (SELECT 1 FROM {staged} f WHERE {self._same('f', staged)} "
                f"AND f.line < {staged}.line)"
            )

    def write(self) -> None:
        now = timezone.now()
        names, staged, table, value = ", ".join(self._key_names()), self.staging_name, self.table, self.value
        with connection.cursor() as cursor:
            # The earliest day that changes, read before writing: from it on, the marked portfolios' values move.
            cursor.execute(
                f"SELECT MIN(s.date) FROM {staged} s WHERE NOT EXISTS "
                f"(SELECT 1 FROM {table} r WHERE {self._same('r', 's')} AND r.{value} = s.{value})"
            )
            since = cursor.fetchone()[0]
            cursor.execute(
                f"SELECT COUNT(*) FROM {staged} s JOIN {table} r ON {self._same('r', 's')} AND r.{value} = s.{value}"
            )
            self.run.skipped += cursor.fetchone()[0]
            cursor.execute(
                f"UPDATE {table} SET updated_at = %s, {value} = (SELECT s.{value} FROM {staged} s WHERE "
                f"{self._same('s', table)}) WHERE EXISTS (SELECT 1 FROM {staged} s WHERE {self._same('s', table)} "
                f"AND s.{value} <> {table}.{value})",
                [now],
            )
            self.run.updated += cursor.rowcount
            cursor.execute(
                f"INSERT INTO {table} ({names}, date, {value}, created_at, updated_at, import_batch_id) "
                f"SELECT {', '.join(f's.{name}' for name in self._key_names())}, s.date, s.{value}, %s, %s, %s "
                f"FROM {staged} s WHERE NOT EXISTS (SELECT 1 FROM {table} r WHERE {self._same('r', 's')}) "
                "ORDER BY s.line",
                [now, now, self.run.batch.pk],
            )
            self.run.created += cursor.rowcount
        if since is not None:
            self.mark_stale(staged_date(since))


@register
class PriceFormat(DatedSeriesFormat):
    """Closing prices per asset and day. A change marks the portfolios holding the asset, as price_create does."""

    kind = "prices"
    model = Price
    permissions = ("holdings.add_price", "holdings.change_price")
    description = "closing prices, one per asset and date, created or updated by asset and date."
    columns = (
        TICKER,
        EXCHANGE,
        Column("date", parsing.iso_date, help="YYYY-MM-DD"),
        Column(
            "close",
            quantity(minimum="0", exclusive=False),
            help=f"in the asset's currency, not negative, up to {QUANTITY_PLACES} decimal places",
        ),
    )
    table = PRICES
    staging_name = "import_prices"
    keys = (("asset_id", "bigint NOT NULL"),)
    value = "close"

    def prepare(self) -> None:
        self.assets = AssetIndex()
        super().prepare()

    def stage_row(self, values: dict[str, Any]) -> tuple[Any, ...]:
        return (self.assets.resolve(values["ticker"], values["exchange"]),)

    def repeated(
        self, cursor: Any, key: tuple[Any, ...], day: datetime.date, value: Decimal, first_line: int
    ) -> tuple[str, list[str]]:
        cursor.execute(f"SELECT ticker, exchange FROM {ASSETS} WHERE id = %s", [key[0]])
        ticker, exchange = cursor.fetchone()
        message = f"the price of {_label(ticker, exchange)} on {day} is already on line {first_line}"
        return message, [ticker, exchange, day.isoformat(), plain(value)]

    def mark_stale(self, since: datetime.date) -> None:
        holders = Allocation.objects.filter(
            asset_id__in=RawSQL(f"SELECT DISTINCT asset_id FROM {self.staging_name}", [])
        ).values("portfolio_id")
        portfolios_history_changed(portfolios=holders, since=since)
        invalidate_namespace(PRICES_CACHE)

    @classmethod
    def exported(cls, rows: QuerySet[Price]) -> QuerySet[Price]:
        return rows.select_related("asset").order_by("asset__ticker", "asset__exchange", "date")

    @classmethod
    def export_row(cls, price: Price) -> dict[str, str]:
        return {
            "ticker": price.asset.ticker,
            "exchange": price.asset.exchange,
            "date": price.date.isoformat(),
            "close": plain(price.close),
        }


# --- Splits ----------------------------------------------------------------------------------------

_SPLIT_COLUMNS = {
    "asset": "ticker",
    "date": "date",
    "new_units": "new_units",
    "old_units": "old_units",
    "cash_in_lieu_price": "cash_in_lieu_price",
    "notes": "notes",
    "quantity": "cash_in_lieu_price",  # a cash-in-lieu sale the services refused
    "price": "cash_in_lieu_price",
}
SPLIT_FIELDS = ("new_units", "old_units", "cash_in_lieu_price", "notes")


@register
class SplitFormat(ImportFormat):
    """Splits by asset (ticker and exchange) and date, each recorded through `split_create` or changed through
    `split_update` (a split has effects beyond its row: cash in lieu, every holder's history): splits are few,
    so the rows are replayed one by one, in date order, never bulk-written."""

    kind = "splits"
    model = Split
    permissions = ("holdings.add_split", "holdings.change_split")
    description = (
        "splits and reverse splits, created or updated by asset and date (the row is the whole record), through "
        "the services: with a cash-in-lieu price each holder's fraction is sold at it. An identical row is skipped; "
        "a change that a holder's later sales do not allow is refused."
    )
    columns = (
        TICKER,
        EXCHANGE,
        Column("date", parsing.iso_date, help="YYYY-MM-DD; effective at the start of the day"),
        Column("new_units", quantity(minimum="0", exclusive=True), help="units after, for every old_units before"),
        Column("old_units", quantity(minimum="0", exclusive=True), help="units before (10 in a 1 for 10 split)"),
        Column(
            "cash_in_lieu_price",
            quantity(minimum="0", exclusive=True),
            required=False,
            help="per new unit, in the asset's currency; empty: fractions are kept",
        ),
        Column("notes", parsing.text(NOTES_MAX_LENGTH), required=False, help="free text"),
    )

    def prepare(self) -> None:
        self.assets = AssetIndex()
        self.rows: list[tuple[int, int, dict[str, Any]]] = []
        self.seen: dict[tuple[int, datetime.date], int] = {}

    def add(self, line: int, values: dict[str, Any]) -> None:
        asset_id = self.assets.resolve(values["ticker"], values["exchange"])
        key = (asset_id, values["date"])
        if key in self.seen:
            raise RowError(
                "date", f"the split of {values['ticker']} on {values['date']} is already on line {self.seen[key]}"
            )
        if values["new_units"] == values["old_units"]:
            raise RowError("new_units", "a split changes the number of units: new and old units cannot be equal")
        self.seen[key] = line
        self.rows.append((line, asset_id, values))

    def write(self) -> None:
        assets = Asset.objects.in_bulk({asset_id for _, asset_id, _ in self.rows})
        existing = {
            (split.asset_id, split.date): split
            for split in Split.objects.filter(asset_id__in=assets.keys()).select_related("asset").order_by("pk")
        }
        for line, asset_id, values in sorted(self.rows, key=lambda row: (row[2]["date"], row[0])):
            fields = {
                "new_units": values["new_units"],
                "old_units": values["old_units"],
                "cash_in_lieu_price": values["cash_in_lieu_price"],
                "notes": values["notes"] or "",
            }
            old = existing.get((asset_id, values["date"]))
            if old is not None and all(getattr(old, name) == fields[name] for name in SPLIT_FIELDS):
                self.run.skipped += 1
                continue
            try:
                with transaction.atomic() if self.run.skip_invalid else nullcontext():
                    if old is None:
                        split_create(
                            actor=self.run.actor,
                            asset=assets[asset_id],
                            date=values["date"],
                            import_batch=self.run.batch,
                            **fields,
                        )
                        self.run.created += 1
                    else:
                        split_update(actor=self.run.actor, split=old, **fields)
                        self.run.updated += 1
            except (ConflictError, ValidationError, PermissionDenied) as error:
                column, message = _refusal(error, _SPLIT_COLUMNS)[0]
                self.run.reject(line, column, message, cells(self.columns, values))
                if not self.run.skip_invalid:
                    return

    @classmethod
    def exported(cls, rows: QuerySet[Split]) -> QuerySet[Split]:
        return rows.select_related("asset").order_by("asset__ticker", "asset__exchange", "date")

    @classmethod
    def export_row(cls, split: Split) -> dict[str, str]:
        return {
            "ticker": split.asset.ticker,
            "exchange": split.asset.exchange,
            "date": split.date.isoformat(),
            "new_units": plain(split.new_units),
            "old_units": plain(split.old_units),
            "cash_in_lieu_price": plain(split.cash_in_lieu_price) if split.cash_in_lieu_price is not None else "",
            "notes": split.notes,
        }


# --- Allocations ---------------------------------------------------------------------------------

# Where a service's refusal points, in the file's columns.
_ALLOCATION_COLUMNS = {
    "client": "client",
    "portfolio": "portfolio",
    "asset": "ticker",
    "kind": "kind",
    "quantity": "quantity",
    "price": "price",
    "fees": "fees",
    "taxes": "taxes",
    "date": "date",
    "notes": "notes",
    "amount": "quantity",  # the cash a trade moves: quantity x price, fees and taxes included
}


@register
class AllocationFormat(PipelinedFormat):
    kind = "allocations"
    model = Allocation
    permissions = ("holdings.add_allocation", "ledger.add_transaction")  # buys and sells settle in cash
    description = (
        "buys, sells and transfers of the holdings of clients' portfolios, recorded as the API records them: in "
        "date order (then line order), each buy or sell settling in cash in its portfolio; none may overdraw its "
        "portfolio's cash or sell more than the portfolio holds, and a closed portfolio takes no new rows. A row "
        "names its portfolio as a row of transactions does. A row is recorded once per identical row (its "
        "content and how often it occurs in the file)."
    )
    columns = (
        CLIENT_COLUMN,
        TICKER,
        EXCHANGE,
        Column("kind", parsing.choice(Allocation.Kind.values), help=", ".join(Allocation.Kind.values)),
        Column("quantity", quantity(minimum="0", exclusive=True), help="positive; the kind gives the direction"),
        Column("price", quantity(minimum="0", exclusive=False), help="per unit, in the asset's currency"),
        Column(
            "fees",
            parsing.decimal(max_digits=AMOUNT_DIGITS, places=AMOUNT_PLACES, minimum="0"),
            required=False,
            help="in the asset's currency (default 0)",
        ),
        Column(
            "taxes",
            parsing.decimal(max_digits=AMOUNT_DIGITS, places=AMOUNT_PLACES, minimum="0"),
            required=False,
            help="transaction tax or withholding, in the asset's currency, settled with the trade (default 0)",
        ),
        Column("date", parsing.iso_date, help="trade date, YYYY-MM-DD"),
        Column("notes", parsing.text(NOTES_MAX_LENGTH), required=False, help="free text"),
        *PORTFOLIO_COLUMNS,
    )
    first_chunk_rows = 1_000

    def prepare(self) -> None:
        # Only the portfolios of clients the actor may see can be named; the rest read as unknown.
        self.portfolios = PortfolioIndex(self.run.actor)
        self.assets = AssetIndex()
        # Every row of the file that parsed, as the file holds it (PostgreSQL: and how it was written).
        self.staging = Staging(STAGED, STAGED_COLUMNS).create()
        self.bulk = BulkAllocations(self.run, self.staging) if connection.vendor == "postgresql" else None

    def stage(self, line: int, values: dict[str, Any]) -> tuple[Any, ...]:
        """The row as the staging table holds it (see STAGED_COLUMNS). Runs in the parsing thread."""
        portfolio = self.portfolios.resolve(values)
        asset_id = self.assets.resolve(values["ticker"], values["exchange"])
        kind, qty, price, fees = values["kind"], values["quantity"], values["price"], values["fees"] or Decimal("0")
        taxes = values["taxes"] or Decimal("0")
        cash, settles = None, ""
        if kind in Allocation.TRADES:
            try:
                cash = trade_cash(kind=kind, quantity=qty, price=price, fees=fees, taxes=taxes)
            except ValidationError as error:
                raise RowError(*validation_messages(error, {"quantity": "quantity", "price": "price"})[0]) from None
            settles = settlement_notes(kind=kind, quantity=qty, asset=self.assets.labels[asset_id])
        notes = values["notes"] or ""
        content = "\x1f".join(
            [
                portfolio.key_owner,
                str(asset_id),
                kind,
                str(qty.normalize()),
                str(price.normalize()),
                str(fees.normalize()),
                str(values["date"]),
                notes,
            ]
            # Only when there are any: rows without taxes keep the keys they were imported under before taxes existed.
            + ([str(taxes.normalize())] if taxes else [])
        )
        digest = hashlib.sha256(content.encode()).hexdigest()[:40]
        # The import key when it is known here without asking the database (see BulkAllocations.import_key).
        key = self.bulk.import_key(portfolio.id, digest) if self.bulk is not None else None
        return (
            line,
            portfolio.id,
            portfolio.client_id,
            asset_id,
            kind,
            str(qty),
            str(price),
            str(fees),
            str(taxes),
            values["date"],
            notes,
            digest,
            None if cash is None else str(cash),
            settles,
            self.assets.currencies[asset_id],
            key,
        )

    def encode_chunk(self, rows: list[tuple[Any, ...]]) -> Any:
        if self.bulk is not None:
            return self.bulk.encode_chunk(rows)
        return self.staging.encode([(*row, False) for row in rows])

    def write_chunk(self, chunk: Any) -> None:
        if self.bulk is not None:
            self.bulk.write_chunk(chunk)
            return
        self.staging.write_encoded(chunk)  # SQLite: rows are replayed through the service after the last one

    def close(self) -> None:
        if self.bulk is not None:
            # If the run is already failing on a database error (which propagates), the rollback resets it.
            with contextlib.suppress(DatabaseError):
                self.bulk.close()
        _close(self.staging, NEW)

    def check(self) -> None:
        self.staging.close()
        if self.bulk is not None:
            self.bulk.check()
            return
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {NEW}")
            cursor.execute(
                f"CREATE TEMPORARY TABLE {NEW} AS SELECT line, portfolio_id, asset_id, kind, "
                "quantity, price, fees, taxes, date, notes, content_hash || ':' || CAST(ROW_NUMBER() OVER "
                "(PARTITION BY portfolio_id, content_hash ORDER BY line) AS varchar(20)) AS import_key "
                f"FROM {STAGED}"
            )
            cursor.execute(f"CREATE INDEX import_allocations_order ON {NEW} (date, line)")
            cursor.execute(
                f"DELETE FROM {NEW} WHERE EXISTS (SELECT 1 FROM "
                f"{ALLOCATIONS} a WHERE a.portfolio_id = {NEW}.portfolio_id "
                f"AND a.import_key = {NEW}.import_key)"
            )
            self.run.skipped += cursor.rowcount

    def write(self) -> None:
        if self.bulk is not None:
            self.bulk.write()
            return
        self._replay()

    def _replay(self) -> None:
        """Replays the new rows through the service in date order, a page at a time (keyset pagination): simple,
        and fast enough on SQLite, which serves development and small files."""
        assets: dict[int, Asset] = {}
        after: tuple[Any, int] | None = None
        while True:
            page = self._page(after)
            if not page:
                break
            after = (page[-1][8], page[-1][0])
            portfolios = Portfolio.objects.select_related("client").in_bulk({row[1] for row in page})
            missing = {row[2] for row in page} - assets.keys()
            assets.update(Asset.objects.in_bulk(missing))
            for line, portfolio_id, asset_id, kind, qty, price, fees, taxes, date, notes, import_key in page:
                portfolio, asset = portfolios[portfolio_id], assets[asset_id]
                try:
                    # With skip_invalid a refused row is rolled back alone (allocation_create's own atomic block
                    # is a savepoint too; this one says so); without, the first refusal fails the whole run.
                    with transaction.atomic() if self.run.skip_invalid else nullcontext():
                        allocation_create(
                            actor=self.run.actor,
                            portfolio=portfolio,
                            asset=asset,
                            kind=kind,
                            quantity=Decimal(qty),
                            price=Decimal(price),
                            fees=Decimal(fees),
                            taxes=Decimal(taxes),
                            date=staged_date(date),
                            notes=notes,
                            import_key=import_key,
                            import_batch=self.run.batch,
                        )
                except (ConflictError, ValidationError, PermissionDenied) as error:
                    row = [portfolio.client.email, asset.ticker, asset.exchange, kind, qty, price, fees, taxes]
                    named = [portfolio.name, portfolio.custodian, portfolio.account_number]
                    column, message = _refusal(error)[0]  # one rejection per row
                    self.run.reject(line, column, message, [*row, staged_date(date).isoformat(), notes, *named])
                    if not self.run.skip_invalid:
                        return  # the first refusal fails the run: the engine rolls everything back
                    continue
                self.run.created += 1

    def _page(self, after: tuple[Any, int] | None) -> list[tuple[Any, ...]]:
        query = (
            "SELECT line, portfolio_id, asset_id, kind, quantity, price, fees, taxes, date, notes, import_key "
            f"FROM {NEW}"
        )
        params: list[Any] = []
        if after is not None:
            query += " WHERE date > %s OR (date = %s AND line > %s)"
            params = [after[0], after[0], after[1]]
        with connection.cursor() as cursor:
            cursor.execute(f"{query} ORDER BY date, line LIMIT {PAGE_ROWS}", params)
            return list(cursor.fetchall())

    @classmethod
    def exported(cls, rows: QuerySet[Allocation]) -> QuerySet[Allocation]:
        return rows.select_related("client", "portfolio", "asset").order_by("date", "id")

    @classmethod
    def export_row(cls, allocation: Allocation) -> dict[str, str]:
        return {
            "client": allocation.client.email,
            "portfolio": allocation.portfolio.name,
            "custodian": allocation.portfolio.custodian,
            "account_number": allocation.portfolio.account_number,
            "ticker": allocation.asset.ticker,
            "exchange": allocation.asset.exchange,
            "kind": allocation.kind,
            "quantity": plain(allocation.quantity),
            "price": plain(allocation.price),
            "fees": plain(allocation.fees),
            "taxes": plain(allocation.taxes),
            "date": allocation.date.isoformat(),
            "notes": allocation.notes,
        }


def _refusal(error: Exception, columns: dict[str, str] | None = None) -> list[tuple[str, str]]:
    columns = columns if columns is not None else _ALLOCATION_COLUMNS
    if isinstance(error, ConflictError):
        return [(columns.get(error.field or "", "row"), error.message)]
    if isinstance(error, PermissionDenied):
        return [("client", str(error))]
    assert isinstance(error, ValidationError)
    return validation_messages(error, columns)


# --- FX rates ------------------------------------------------------------------------------------

FX_RATES = FxRate._meta.db_table


@register
class FxRateFormat(DatedSeriesFormat):
    """Rates per currency pair and day. A change marks every portfolio's history changed from the earliest day
    written (as the services do: a rate converts holdings of every client, so no portfolio is left out)."""

    kind = "fx"
    model = FxRate
    permissions = ("holdings.add_fxrate", "holdings.change_fxrate")
    description = (
        "exchange rates as published: rate units of quote for one unit of base on a date, created or updated by "
        "base, quote and date. Inverses and crosses are derived, not imported."
    )
    columns = (
        Column("base", parsing.currency, help="ISO 4217 code of the currency one unit of which the rate prices"),
        Column("quote", parsing.currency, help="ISO 4217 code of the currency the rate is in; not the base"),
        Column("date", parsing.iso_date, help="publication day, YYYY-MM-DD"),
        Column(
            "rate",
            parsing.decimal(max_digits=QUANTITY_DIGITS, places=QUANTITY_PLACES, minimum="0", exclusive=True),
            help=f"units of quote for one unit of base, greater than zero, up to {QUANTITY_PLACES} decimal places",
        ),
    )
    table = FX_RATES
    staging_name = "import_fx_rates"
    keys = (("base", "varchar(3) NOT NULL"), ("quote", "varchar(3) NOT NULL"))
    value = "rate"

    def stage_row(self, values: dict[str, Any]) -> tuple[Any, ...]:
        if values["base"] == values["quote"]:
            raise RowError("quote", "a rate is between two different currencies")
        return values["base"], values["quote"]

    def repeated(
        self, cursor: Any, key: tuple[Any, ...], day: datetime.date, value: Decimal, first_line: int
    ) -> tuple[str, list[str]]:
        base, quote = key
        message = f"the {base}/{quote} rate of {day} is already on line {first_line}"
        return message, [base, quote, day.isoformat(), plain(value)]

    def mark_stale(self, since: datetime.date) -> None:
        portfolios_history_changed(portfolios=Portfolio.objects.values("pk"), since=since)
        invalidate_namespace(FX_RATES_CACHE)

    @classmethod
    def exported(cls, rows: QuerySet[FxRate]) -> QuerySet[FxRate]:
        return rows.order_by("base", "quote", "date")

    @classmethod
    def export_row(cls, fx: FxRate) -> dict[str, str]:
        return {"base": fx.base, "quote": fx.quote, "date": fx.date.isoformat(), "rate": plain(fx.rate)}


# --- Dividends -----------------------------------------------------------------------------------

_DIVIDEND_COLUMNS = {
    "client": "client",
    "portfolio": "portfolio",
    "asset": "ticker",
    "ex_date": "ex_date",
    "pay_date": "pay_date",
    "currency": "currency",
    "gross": "gross",
    "amount_per_unit": "amount_per_unit",
    "withholding_tax": "withholding_tax",
    "notes": "notes",
    "amount": "gross",  # the ledger's word for the cash a changed dividend takes back
}


@register
class DividendFormat(ImportFormat):
    kind = "dividends"
    model = Dividend
    permissions = ("holdings.add_dividend", "holdings.change_dividend", "ledger.add_transaction")
    description = (
        "cash dividends paid to clients' portfolios, recorded as the API records them: each posts its net cash "
        "(gross less withholding tax) on its pay date. A row names its portfolio as a row of transactions does; "
        "the portfolio must hold units of the asset at the close before the ex-date. A dividend is known by its "
        "portfolio, asset and ex-date: a row matching one with the same details is skipped, with other details "
        "it changes it (its cash reversed and posted anew)."
    )
    columns = (
        CLIENT_COLUMN,
        TICKER,
        EXCHANGE,
        Column("ex_date", parsing.iso_date, help="YYYY-MM-DD; units held at the close of the day before are paid"),
        Column("pay_date", parsing.iso_date, help="YYYY-MM-DD, the day the cash arrives"),
        Column(
            "gross",
            parsing.decimal(max_digits=AMOUNT_DIGITS, places=AMOUNT_PLACES, minimum="0", exclusive=True),
            required=False,
            help="before withholding tax, in the dividend's currency; or leave empty and give amount_per_unit",
        ),
        Column(
            "amount_per_unit",
            quantity(minimum="0", exclusive=True),
            required=False,
            help="per unit held at the close before the ex-date (the gross is this times those units)",
        ),
        Column(
            "withholding_tax",
            parsing.decimal(max_digits=AMOUNT_DIGITS, places=AMOUNT_PLACES, minimum="0"),
            required=False,
            help="withheld at source, in the dividend's currency (default 0)",
        ),
        Column("currency", parsing.currency, required=False, help="ISO 4217 code paid in; the asset's by default"),
        Column("notes", parsing.text(NOTES_MAX_LENGTH), required=False, help="free text"),
        *PORTFOLIO_COLUMNS,
    )

    def prepare(self) -> None:
        # Only the portfolios of clients the actor may see can be named; the rest read as unknown.
        self.portfolios = PortfolioIndex(self.run.actor)
        self.assets = AssetIndex()
        # Dividends are a few per holding and year: the file's rows are kept as parsed, in line order.
        self.rows: list[tuple[int, int, int, dict[str, Any]]] = []
        self.first_line: dict[tuple[int, int, datetime.date], int] = {}

    def add(self, line: int, values: dict[str, Any]) -> None:
        portfolio = self.portfolios.resolve(values)
        asset_id = self.assets.resolve(values["ticker"], values["exchange"])
        if (values["gross"] is None) == (values["amount_per_unit"] is None):
            raise RowError("gross", "give either gross or amount_per_unit, not both")
        key = (portfolio.id, asset_id, values["ex_date"])
        if key in self.first_line:
            raise RowError(
                "ex_date", f"line {self.first_line[key]} names the same dividend (portfolio, asset, ex-date)"
            )
        self.first_line[key] = line
        self.rows.append((line, portfolio.id, asset_id, values))

    def write(self) -> None:
        refused = portfolios_lock_for_import(actor=self.run.actor, portfolio_ids={row[1] for row in self.rows})
        portfolios = Portfolio.objects.in_bulk({row[1] for row in self.rows})
        assets = Asset.objects.in_bulk({row[2] for row in self.rows})
        existing = {
            (d.portfolio_id, d.asset_id, d.ex_date): d
            for d in Dividend.objects.filter(portfolio_id__in=portfolios, asset_id__in=assets)
            .select_related("asset")
            .order_by()
        }
        for line, portfolio_id, asset_id, values in self.rows:
            asset = assets[asset_id]
            if portfolio_id in refused.hidden:
                self._refuse(line, *refused.hidden[portfolio_id], values)
                continue
            found = existing.get((portfolio_id, asset_id, values["ex_date"]))
            if found is not None and self._same(found, values, asset):
                self.run.skipped += 1
                continue
            if portfolio_id in refused.closed:
                self._refuse(line, *refused.closed[portfolio_id], values)
                continue
            fields = {
                "pay_date": values["pay_date"],
                "gross": values["gross"],
                "amount_per_unit": values["amount_per_unit"],
                "withholding_tax": values["withholding_tax"] or Decimal("0"),
                "currency": values["currency"] or asset.currency,
                "notes": values["notes"] or "",
            }
            try:
                # With skip_invalid a refused row is rolled back alone; without, the first refusal fails the run.
                with transaction.atomic() if self.run.skip_invalid else nullcontext():
                    if found is None:
                        dividend_create(
                            actor=self.run.actor,
                            portfolio=portfolios[portfolio_id],
                            asset=asset,
                            ex_date=values["ex_date"],
                            import_batch=self.run.batch,
                            **fields,
                        )
                    else:
                        dividend_update(actor=self.run.actor, dividend=found, **fields)
            except (ConflictError, ValidationError, PermissionDenied) as error:
                self._refuse(line, *_dividend_refusal(error), values)
                if not self.run.skip_invalid:
                    return
                continue
            if found is None:
                self.run.created += 1
            else:
                self.run.updated += 1

    @staticmethod
    def _same(dividend: Dividend, values: dict[str, Any], asset: Asset) -> bool:
        if values["amount_per_unit"] is not None:
            amount_matches = dividend.amount_per_unit == values["amount_per_unit"]
        else:
            amount_matches = dividend.amount_per_unit is None and dividend.gross == values["gross"]
        return amount_matches and (
            dividend.pay_date,
            dividend.withholding_tax,
            dividend.currency,
            dividend.notes,
        ) == (
            values["pay_date"],
            values["withholding_tax"] or Decimal("0"),
            values["currency"] or asset.currency,
            values["notes"] or "",
        )

    def _refuse(self, line: int, column: str, message: str, values: dict[str, Any]) -> None:
        row = ["" if values.get(c.name) is None else str(values[c.name]) for c in self.columns]
        self.run.reject(line, column, message, row)

    @classmethod
    def exported(cls, rows: QuerySet[Dividend]) -> QuerySet[Dividend]:
        return rows.select_related("client", "portfolio", "asset").order_by("pay_date", "id")

    @classmethod
    def export_row(cls, dividend: Dividend) -> dict[str, str]:
        per_unit = dividend.amount_per_unit
        return {
            "client": dividend.client.email,
            "portfolio": dividend.portfolio.name,
            "custodian": dividend.portfolio.custodian,
            "account_number": dividend.portfolio.account_number,
            "ticker": dividend.asset.ticker,
            "exchange": dividend.asset.exchange,
            "ex_date": dividend.ex_date.isoformat(),
            "pay_date": dividend.pay_date.isoformat(),
            # One or the other, as a row gives them: the gross of a per-unit dividend is derived again.
            "gross": "" if per_unit is not None else plain(dividend.gross),
            "amount_per_unit": "" if per_unit is None else plain(per_unit),
            "withholding_tax": plain(dividend.withholding_tax),
            "currency": dividend.currency,
            "notes": dividend.notes,
        }


def _dividend_refusal(error: Exception) -> tuple[str, str]:
    if isinstance(error, ConflictError):
        return _DIVIDEND_COLUMNS.get(error.field or "", "row"), error.message
    if isinstance(error, PermissionDenied):
        return "client", str(error)
    assert isinstance(error, ValidationError)
    return validation_messages(error, _DIVIDEND_COLUMNS)[0]
