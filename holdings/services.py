"""Writes on assets, prices, exchange rates and allocations. A buy or sell settles in cash through the ledger's
service."""

import datetime
import logging
from collections.abc import Iterable, Sequence
from decimal import ROUND_DOWN, ROUND_FLOOR, Decimal, localcontext
from typing import Any

from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from clients.models import Portfolio
from clients.services import portfolio_lock, portfolios_history_changed, portfolios_lock
from ledger.services import settlement_post, settlement_reverse
from portfolio_site.cache import invalidate_namespace
from portfolio_site.errors import ConflictError
from portfolio_site.historical import bulk_create_tracked
from portfolio_site.imports.models import ImportBatch
from portfolio_site.money import (
    AMOUNT_DIGITS,
    AMOUNT_PLACES,
    QUANTITY_DIGITS,
    QUANTITY_QUANTUM,
    Shortfall,
    to_amount,
    validate_storable,
)

from . import daily_values
from .models import Allocation, Asset, AssetImage, AssetSymbol, FxRate, Price, Split
from .selectors import asset_holders, units_shortfall, units_shortfalls
from .valuation import snapshot as position_snapshots

logger = logging.getLogger(__name__)

ASSETS_CACHE = "assets"
ASSET_CURRENCY_FIXED = "The currency of an asset that has allocations cannot change."
TRADE_MOVES_NO_CASH = (
    "A buy or sell must move cash (quantity x price, fees and taxes included, must be positive); use transfer_in or "
    "transfer_out to move securities without cash."
)
PRICES_CACHE = "prices"
FX_RATES_CACHE = "fx-rates"
# Rows per INSERT of a bulk load: under SQLite's limit on variables per statement (999 in older builds).
BULK_BATCH = 150


# --- Assets and prices -------------------------------------------------------------------------


@transaction.atomic
def asset_create(
    *,
    ticker: str,
    name: str,
    currency: str,
    exchange: str = "",
    asset_type: str = "equity",
    isin: str = "",
    lot_size: Decimal = Decimal("1"),
    description: str = "",
) -> Asset:
    asset = Asset(
        ticker=ticker,
        name=name,
        currency=currency,
        exchange=exchange,
        asset_type=asset_type,
        isin=isin,
        lot_size=lot_size,
        description=description,
    )
    asset.full_clean()
    asset.save()
    invalidate_namespace(ASSETS_CACHE)
    return asset


@transaction.atomic
def asset_update(*, asset: Asset, **fields: Any) -> Asset:
    """Changes an asset; its currency only while no allocation uses it. The row is locked first: a trade in it
    holds a shared lock until it commits (see `_asset_for_trade`), so the check sees every trade, committed or
    about to be, and no trade settles in the currency being replaced."""
    locked = Asset.objects.select_for_update().get(pk=asset.pk)
    if "currency" in fields and fields["currency"] != locked.currency and locked.allocations.exists():
        raise ConflictError(ASSET_CURRENCY_FIXED, field="currency")
    for name, value in fields.items():
        setattr(asset, name, value)
    asset.full_clean()
    asset.save()
    invalidate_namespace(ASSETS_CACHE)
    invalidate_namespace(PRICES_CACHE)
    return asset


def stored_file_delete_on_commit(name: str) -> None:
    """Deletes a stored file once the rows that named it are gone for good (a rollback keeps both). A storage
    error then is logged, never raised: the deletion has committed, and a 500 would tell the caller it had not (a
    file left behind costs space, and the nightly sweep of orphan image files finds it again)."""

    def delete() -> None:
        try:
            default_storage.delete(name)
        except Exception:
            logger.exception("Could not delete the stored file %s", name)

    transaction.on_commit(delete)


@transaction.atomic
def asset_delete(*, asset: Asset) -> None:
    """Deletes an asset, its prices and its images; one that any allocation uses is protected (409). The images'
    stored files are deleted once that commits (a rollback keeps them, with their rows)."""
    image_files = list(AssetImage.objects.filter(asset=asset).values_list("file", flat=True))
    asset.delete()
    for name in image_files:
        stored_file_delete_on_commit(name)
    invalidate_namespace(ASSETS_CACHE)
    invalidate_namespace(PRICES_CACHE)


@transaction.atomic
def asset_symbol_create(*, asset: Asset, source: str, symbol: str) -> AssetSymbol:
    """Names the asset's symbol at a market data source (a key of settings.MARKET_DATA_SOURCES, not checked
    against it: settings change, a symbol stays valid data)."""
    row = AssetSymbol(asset=asset, source=source, symbol=symbol)
    row.full_clean()
    row.save()
    invalidate_namespace(ASSETS_CACHE)  # the asset API shows its symbols
    return row


@transaction.atomic
def asset_symbol_update(*, asset_symbol: AssetSymbol, **fields: Any) -> AssetSymbol:
    for name, value in fields.items():
        setattr(asset_symbol, name, value)
    asset_symbol.full_clean()
    asset_symbol.save()
    invalidate_namespace(ASSETS_CACHE)
    return asset_symbol


@transaction.atomic
def asset_symbol_delete(*, asset_symbol: AssetSymbol) -> None:
    asset_symbol.delete()
    invalidate_namespace(ASSETS_CACHE)


@transaction.atomic
def price_create(*, asset: Asset, date: datetime.date, close: Decimal) -> Price:
    price = Price(asset=asset, date=date, close=close)
    price.full_clean()
    price.save()
    _holders_history_changed(asset_id=asset.pk, since=date)
    invalidate_namespace(PRICES_CACHE)
    return price


@transaction.atomic
def price_update(*, price: Price, **fields: Any) -> Price:
    before = Price.objects.values("asset_id", "date").get(pk=price.pk)
    for name, value in fields.items():
        setattr(price, name, value)
    price.full_clean()
    price.save()
    _holders_history_changed(asset_id=before["asset_id"], since=before["date"])
    _holders_history_changed(asset_id=price.asset_id, since=price.date)
    invalidate_namespace(PRICES_CACHE)
    return price


@transaction.atomic
def price_delete(*, price: Price) -> None:
    price.delete()
    _holders_history_changed(asset_id=price.asset_id, since=price.date)
    invalidate_namespace(PRICES_CACHE)


@transaction.atomic
def prices_bulk_create(*, prices: Sequence[Price]) -> list[Price]:
    """Many closes at once (a history load): a few INSERTs instead of a save and an UPDATE per row. Each row is
    checked field by field as `price_create` checks it, but its constraints (uniqueness, a close not negative) are
    left to the database, which refuses the whole load (checking them here costs a query per row), and the asset
    is taken as given (an instance, not an id to look up). The holders of each asset are
    then marked from its earliest new close, and the price caches invalidated: what `price_create` does per row.
    Each close's creation is recorded in the change history too, in bulk (portfolio_site.historical)."""
    for price in prices:
        price.full_clean(exclude=["asset"], validate_unique=False, validate_constraints=False)
    created = bulk_create_tracked(Price, prices, batch_size=BULK_BATCH)
    earliest: dict[int, datetime.date] = {}
    for price in prices:
        earliest[price.asset_id] = min(price.date, earliest.get(price.asset_id, price.date))
    for asset_id, since in earliest.items():
        _holders_history_changed(asset_id=asset_id, since=since)
    if prices:
        invalidate_namespace(PRICES_CACHE)
    return created


def _holders_history_changed(*, asset_id: int, since: datetime.date) -> None:
    """A price changes the value of the portfolios that hold (or held) the asset, and only theirs."""
    portfolios_history_changed(
        portfolios=Allocation.objects.filter(asset_id=asset_id).values("portfolio_id"), since=since
    )


# --- Exchange rates ---------------------------------------------------------------------------


@transaction.atomic
def fx_rate_create(*, base: str, quote: str, date: datetime.date, rate: Decimal) -> FxRate:
    fx = FxRate(base=base, quote=quote, date=date, rate=rate)
    fx.full_clean()
    fx.save()
    _all_history_changed(since=date)
    invalidate_namespace(FX_RATES_CACHE)
    return fx


@transaction.atomic
def fx_rate_update(*, fx_rate: FxRate, **fields: Any) -> FxRate:
    before = FxRate.objects.values_list("date", flat=True).get(pk=fx_rate.pk)
    for name, value in fields.items():
        setattr(fx_rate, name, value)
    fx_rate.full_clean()
    fx_rate.save()
    _all_history_changed(since=min(before, fx_rate.date))
    invalidate_namespace(FX_RATES_CACHE)
    return fx_rate


@transaction.atomic
def fx_rate_delete(*, fx_rate: FxRate) -> None:
    fx_rate.delete()
    _all_history_changed(since=fx_rate.date)
    invalidate_namespace(FX_RATES_CACHE)


@transaction.atomic
def fx_rates_bulk_create(*, rates: Sequence[FxRate]) -> list[FxRate]:
    """Many rates at once (a history load), checked field by field as `fx_rate_create` checks them, their
    constraints left to the database (see `prices_bulk_create`); every portfolio is then marked from the earliest
    new day and the rate caches invalidated, as `fx_rate_create` does per row."""
    for rate in rates:
        rate.full_clean(validate_unique=False, validate_constraints=False)
    created = bulk_create_tracked(FxRate, rates, batch_size=BULK_BATCH)
    if rates:
        _all_history_changed(since=min(rate.date for rate in rates))
        invalidate_namespace(FX_RATES_CACHE)
    return created


def _all_history_changed(*, since: datetime.date) -> None:
    """A rate changes the value of holdings in every currency it converts, directly, inverted or as a leg of a
    cross through the pivot: unlike a price, no cheap query says whose, so every portfolio is marked (one
    UPDATE). Rates change rarely after publication; a needless recomputation is cheaper than a stale value."""
    portfolios_history_changed(portfolios=Portfolio.objects.values("pk"), since=since)


# --- Allocations ------------------------------------------------------------------------------


def settlement_amount(
    *, kind: str, quantity: Decimal, price: Decimal, fees: Decimal, taxes: Decimal = Decimal("0")
) -> Decimal:
    """Cash a trade moves: what a buy costs (gross plus fees and taxes) or what a sell brings (gross less fees and
    taxes).

    Exact whatever the size of quantity and price (Python's default 28 digits would round, then fail to
    quantize); a result the ledger cannot hold is refused.
    """
    with localcontext() as context:
        context.prec = 2 * QUANTITY_DIGITS + 2
        gross = quantity * price
        costs = fees + taxes
        amount = to_amount(gross + costs if kind == Allocation.Kind.BUY else gross - costs)
    if abs(amount) >= Decimal(10) ** (AMOUNT_DIGITS - AMOUNT_PLACES):
        raise ValidationError({"quantity": f"The trade's cash amount ({amount}) is larger than the ledger can hold."})
    try:
        validate_storable(amount)
    except ValidationError as error:
        raise ValidationError({"quantity": f"The trade's cash amount: {error.messages[0]}"}) from None
    return amount


def settlement_notes(*, kind: str, quantity: Decimal, asset: Asset | str) -> str:
    """The notes of a trade's settlement ("Settlement of buy 10 SAP.XETR"); the bulk import writes the same."""
    return f"Settlement of {Allocation.Kind(kind).label.lower()} {quantity} {asset}"


def trade_cash(
    *, kind: str, quantity: Decimal, price: Decimal, fees: Decimal, taxes: Decimal = Decimal("0")
) -> Decimal:
    """The cash a buy or sell settles (`settlement_amount`), refusing one that moves none (ValidationError on
    `price`): the rule every door checks a trade with."""
    amount = settlement_amount(kind=kind, quantity=quantity, price=price, fees=fees, taxes=taxes)
    if amount <= 0:
        raise ValidationError({"price": TRADE_MOVES_NO_CASH})
    return amount


def _settle(*, actor: Any, allocation: Allocation, overdraft_allowed: bool = False) -> None:
    if allocation.kind not in Allocation.TRADES:
        allocation.settlement = None
        return
    amount = trade_cash(
        kind=allocation.kind,
        quantity=allocation.quantity,
        price=allocation.price,
        fees=allocation.fees,
        taxes=allocation.taxes,
    )
    allocation.settlement = settlement_post(
        actor=actor,
        portfolio_id=allocation.portfolio_id,
        kind=allocation.kind,
        amount=amount,
        currency=allocation.asset.currency,
        date=allocation.date,
        notes=settlement_notes(kind=allocation.kind, quantity=allocation.quantity, asset=allocation.asset),
        import_batch=allocation.import_batch,
        overdraft_allowed=overdraft_allowed,
    )


def short_position_check(*, portfolio: Portfolio, asset: Asset, since: datetime.date) -> None:
    """Refuses (ConflictError, rolled back with the write) a state where the portfolio holds fewer than zero
    units of the asset at the end of any day from `since` on, or fewer than its holds of the asset (`UnitHold`) at
    the end of any day from today on. Called after the write, inside its lock."""
    shortfall = units_shortfall(portfolio_id=portfolio.pk, asset_id=asset.pk, since=since)
    if shortfall is not None:
        raise ConflictError(
            short_position_message(portfolio=portfolio, asset=asset, shortfall=shortfall), field="quantity"
        )


def short_position_message(*, portfolio: Portfolio, asset: Asset, shortfall: Shortfall) -> str:
    """The words of a short-position refusal, shared with the bulk import so that every door says the same. When
    units are on hold that day, what the change would leave is what is free (the units less the holds)."""
    if shortfall.held:
        return (
            f"Not enough units of {asset} in {portfolio}: the change would leave {shortfall.balance} available at the "
            f"end of {shortfall.day} ({shortfall.held} on hold); a sell or transfer out cannot exceed the quantity "
            "held that day less what is on hold."
        )
    return (
        f"Not enough units of {asset} in {portfolio}: the change would leave a position of {shortfall.balance} "
        f"at the end of {shortfall.day}; a sell or transfer out cannot exceed the quantity held that day."
    )


def _validated(allocation: Allocation) -> Allocation:
    allocation.full_clean(exclude=["settlement", "counterpart"])
    return allocation


@transaction.atomic
def allocation_create(
    *,
    actor: Any,
    portfolio: Portfolio,
    asset: Asset,
    kind: str,
    quantity: Decimal,
    price: Decimal,
    date: datetime.date,
    fees: Decimal = Decimal("0"),
    taxes: Decimal = Decimal("0"),
    notes: str = "",
    import_key: str | None = None,
    import_batch: ImportBatch | None = None,
    cash_in_lieu_of: Split | None = None,
    overdraft_allowed: bool = False,
    owned_by: str = "",
) -> Allocation:
    """Records a movement in a portfolio; `import_key` is for imports (see holdings.importers), unique per
    portfolio; `import_batch` is the import creating it (provenance, carried by its settlement too);
    `cash_in_lieu_of` is for `split_create` only (a sale of a split's fraction).

    `overdraft_allowed` is for a broker's fill only: the trade happened whatever our books say, so it is recorded
    even if it leaves the portfolio short of cash or units or eats into their holds (the cash and units checks are
    skipped, everything else is the same). The caller then reads the shortfalls with
    `ledger.selectors.cash_shortfall` and `holdings.selectors.units_shortfall`. `owned_by` names the record that
    owns the movement (a fill): changing or deleting it on its own is then refused."""
    # A broker's fill is recorded in a portfolio closed meanwhile too: it happened at the broker.
    locked = portfolio_lock(actor=actor, portfolio_id=portfolio.pk, for_movement=not overdraft_allowed)
    asset = _asset_for_trade(asset)
    allocation = _validated(
        Allocation(
            client_id=locked.client_id,
            portfolio=locked,
            asset=asset,
            kind=kind,
            quantity=quantity,
            price=price,
            fees=fees,
            taxes=taxes,
            date=date,
            notes=notes,
            import_key=import_key,
            import_batch=import_batch,
            cash_in_lieu_of=cash_in_lieu_of,
            owned_by=owned_by,
        )
    )
    _settle(actor=actor, allocation=allocation, overdraft_allowed=overdraft_allowed)
    allocation.save()
    portfolios_history_changed(portfolios=[locked.pk], since=allocation.date)
    if not overdraft_allowed:
        short_position_check(portfolio=locked, asset=asset, since=allocation.date)
    return allocation


def _asset_for_trade(asset: Asset) -> Asset:
    """The asset as it stands, held by a shared lock to the end of the transaction: its currency cannot change
    under a trade that settles in it (asset_update takes the row's exclusive lock), while other trades in the
    same asset go on at once. SQLite serialises writers anyway."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT 1 FROM {Asset._meta.db_table} WHERE id = %s FOR SHARE", [asset.pk])
    return Asset.objects.get(pk=asset.pk)


def _movement_locked(
    *, actor: Any, pk: int, also: frozenset[int] = frozenset()
) -> tuple[Allocation, dict[int, Portfolio]]:
    """The movement as it stands once its portfolio (and the portfolios in `also`) are locked, re-read under the
    lock: a writer queued behind another's change of the same movement sees that change, not its stale copy.
    ConflictError if it was deleted or moved to another portfolio meanwhile."""
    seen = Allocation.objects.filter(pk=pk).values_list("portfolio_id", flat=True).first()
    if seen is None:
        raise ConflictError("This movement no longer exists: it was deleted meanwhile.")
    locked = portfolios_lock(actor=actor, portfolio_ids={seen, *also})
    current = Allocation.objects.select_related("portfolio", "asset", "settlement").filter(pk=pk).first()
    if current is None or current.portfolio_id != seen:
        raise ConflictError("This movement was changed or deleted meanwhile: reload it and try again.")
    return current, locked


SETTLEMENT_FIELDS = frozenset({"portfolio", "asset", "kind", "quantity", "price", "fees", "taxes", "date"})


CASH_IN_LIEU_FIXED = "This sale is cash in lieu of a split's fraction: change or delete the split instead."


def _refuse_owned(allocation: Allocation) -> None:
    if allocation.cash_in_lieu_of_id is not None:
        raise ConflictError(CASH_IN_LIEU_FIXED)
    if allocation.owned_by:
        raise ConflictError(f"This movement records {allocation.owned_by}: it cannot be changed or deleted on its own.")


def _refuse_transfer_leg(allocation: Allocation) -> None:
    _refuse_owned(allocation)
    if allocation.counterpart_id is not None or Allocation.objects.filter(counterpart=allocation).exists():
        raise ConflictError(
            "This movement is a leg of a transfer between portfolios; delete the transfer (either leg) instead."
        )


@transaction.atomic
def allocation_update(*, actor: Any, allocation: Allocation, **fields: Any) -> Allocation:
    """Changes a movement; a trade's old settlement is reversed and a new one posted (the ledger is never edited).
    Moving it to another portfolio keeps it with its client."""
    new_portfolio = fields.get("portfolio")
    before, locked = _movement_locked(
        actor=actor, pk=allocation.pk, also=frozenset({new_portfolio.pk}) if new_portfolio else frozenset()
    )
    _refuse_transfer_leg(before)
    new_portfolio = new_portfolio or before.portfolio
    client = fields.pop("client", None)
    if new_portfolio.client_id != before.client_id or (client is not None and client.pk != before.client_id):
        raise ValidationError({"portfolio": "A movement stays with its client; choose one of the client's portfolios."})
    # The changes apply to the movement as it stands under the lock, not to the caller's copy of it.
    allocation = Allocation.objects.select_related("portfolio", "asset").get(pk=before.pk)
    for name, value in fields.items():
        setattr(allocation, name, value)
    if "asset" in fields:
        allocation.asset = _asset_for_trade(allocation.asset)
    _validated(allocation)
    resettle = any(getattr(before, name) != getattr(allocation, name) for name in SETTLEMENT_FIELDS & fields.keys())
    if resettle:
        old = before.settlement
        # Take the step that brings cash in first, so that the check on the step that takes it out
        # sees the final balance: reversing a sell takes cash out, reversing a buy brings it in.
        if old is not None and old.kind == Allocation.Kind.SELL:
            _settle(actor=actor, allocation=allocation)
            settlement_reverse(actor=actor, transaction=old)
        else:
            if old is not None:
                settlement_reverse(actor=actor, transaction=old)
            _settle(actor=actor, allocation=allocation)
    allocation.save()
    since = min(before.date, allocation.date)
    portfolios_history_changed(portfolios=[before.portfolio_id, allocation.portfolio_id], since=since)
    short_position_check(portfolio=locked[before.portfolio_id], asset=before.asset, since=since)
    short_position_check(portfolio=locked[allocation.portfolio_id], asset=allocation.asset, since=since)
    return allocation


def _delete(*, actor: Any, allocation: Allocation) -> None:
    allocation.delete()
    if allocation.settlement is not None:
        settlement_reverse(actor=actor, transaction=allocation.settlement)


@transaction.atomic
def allocation_delete(*, actor: Any, allocation: Allocation) -> None:
    """Deletes a movement and reverses its settlement; deleting either leg of a transfer deletes both."""
    before, _ = _movement_locked(actor=actor, pk=allocation.pk)
    _refuse_owned(before)
    legs = [before]
    if before.counterpart_id is not None:
        legs.append(Allocation.objects.select_related("portfolio", "asset").get(pk=before.counterpart_id))
    elif incoming := Allocation.objects.select_related("portfolio", "asset").filter(counterpart=before).first():
        legs.insert(0, incoming)  # the incoming leg points at the outgoing one: it goes first
    locked = portfolios_lock(actor=actor, portfolio_ids={leg.portfolio_id for leg in legs})
    for leg in legs:
        _delete(actor=actor, allocation=leg)
        portfolios_history_changed(portfolios=[leg.portfolio_id], since=leg.date)
    for leg in legs:
        short_position_check(portfolio=locked[leg.portfolio_id], asset=leg.asset, since=leg.date)


@transaction.atomic
def units_transfer(
    *,
    actor: Any,
    from_portfolio: Portfolio,
    to_portfolio: Portfolio,
    asset: Asset,
    quantity: Decimal,
    date: datetime.date,
    price: Decimal = Decimal("0"),
    notes: str = "",
) -> tuple[Allocation, Allocation]:
    """Moves units of an asset between two portfolios of one client, no cash changing hands: a transfer out and
    a transfer in, recorded together. `price` is the value per unit to record on both legs (e.g. the cost
    carried over).

    ValidationError if the portfolios are the same or belong to different clients; ConflictError if the
    source does not hold the units or either portfolio is closed.
    """
    if from_portfolio.pk == to_portfolio.pk:
        raise ValidationError({"to_portfolio": "A transfer moves units to another portfolio."})
    locked = portfolios_lock(actor=actor, portfolio_ids={from_portfolio.pk, to_portfolio.pk})
    source, target = locked[from_portfolio.pk], locked[to_portfolio.pk]
    if source.client_id != target.client_id:
        raise ValidationError({"to_portfolio": "Units move between portfolios of the same client only."})
    notes = notes or f"Transfer from {source.name} to {target.name}"
    legs = {"asset": asset, "quantity": quantity, "price": price, "date": date, "notes": notes}
    out = _validated(
        Allocation(client_id=source.client_id, portfolio=source, kind=Allocation.Kind.TRANSFER_OUT, **legs)
    )
    out.save()
    into = _validated(
        Allocation(
            client_id=target.client_id, portfolio=target, kind=Allocation.Kind.TRANSFER_IN, counterpart=out, **legs
        )
    )
    into.save()
    portfolios_history_changed(portfolios=[source.pk, target.pk], since=date)
    short_position_check(portfolio=source, asset=asset, since=date)
    return out, into


# --- Splits ---------------------------------------------------------------------------------

SPLITS_CACHE = "splits"
ONE_DAY = datetime.timedelta(days=1)


@transaction.atomic
def split_create(
    *,
    actor: Any,
    asset: Asset,
    date: datetime.date,
    new_units: Decimal,
    old_units: Decimal,
    cash_in_lieu_price: Decimal | None = None,
    notes: str = "",
    import_batch: ImportBatch | None = None,
) -> Split:
    """Records a split of `asset` from the start of `date`: every holder's units are `new_units` for every
    `old_units` from then on (holdings.splits; nothing is written into their movements). With a
    `cash_in_lieu_price`, each holder left with a fraction sells it on `date` at that price (`_pay_cash_in_lieu`).
    Every holder's history is stale from `date` on. ValidationError for a bad ratio or a second split of the
    asset on the same day."""
    _split_locks(actor=actor, asset_ids={asset.pk})
    split = Split(
        asset=asset,
        date=date,
        new_units=new_units,
        old_units=old_units,
        cash_in_lieu_price=cash_in_lieu_price,
        notes=notes,
        import_batch=import_batch,
    )
    split.full_clean()
    split.save()
    _pay_cash_in_lieu(actor=actor, split=split)
    _holders_history_changed(asset_id=asset.pk, since=date)
    invalidate_namespace(SPLITS_CACHE)
    return split


@transaction.atomic
def split_update(*, actor: Any, split: Split, **fields: Any) -> Split:
    """Changes a split: its cash in lieu is taken back (each sale deleted, its settlement reversed) and paid again
    by the new terms; the holders' units are checked from the earlier of the old and new day (a sale recorded in
    the split's new units may no longer be covered: ConflictError, nothing changed)."""
    before = Split.objects.select_related("asset").get(pk=split.pk)
    _split_locks(actor=actor, asset_ids={before.asset_id, fields["asset"].pk if "asset" in fields else before.asset_id})
    _take_back_cash_in_lieu(actor=actor, split=before)
    split = Split.objects.select_related("asset").get(pk=before.pk)
    for name, value in fields.items():
        setattr(split, name, value)
    split.full_clean()
    split.save()
    _pay_cash_in_lieu(actor=actor, split=split)
    for asset_id, since in {(before.asset_id, min(before.date, split.date)), (split.asset_id, split.date)}:
        _holders_history_changed(asset_id=asset_id, since=since)
        _holders_units_check(asset_id=asset_id, since=since)
    invalidate_namespace(SPLITS_CACHE)
    return split


@transaction.atomic
def split_delete(*, actor: Any, split: Split) -> None:
    """Deletes a split and takes back its cash in lieu; ConflictError (nothing changed) when a holder's later sales
    need the units the split gave."""
    before = Split.objects.select_related("asset").get(pk=split.pk)
    _split_locks(actor=actor, asset_ids={before.asset_id})
    _take_back_cash_in_lieu(actor=actor, split=before)
    before.delete()
    _holders_history_changed(asset_id=before.asset_id, since=before.date)
    _holders_units_check(asset_id=before.asset_id, since=before.date)
    invalidate_namespace(SPLITS_CACHE)


SPLIT_HOLDERS_CHANGED = "Movements in this asset were recorded meanwhile by a portfolio new to it: try again."


def _split_locks(*, actor: Any, asset_ids: set[int]) -> None:
    """Every portfolio that has ever moved the assets, locked in primary-key order, then the assets' rows, in the
    order every trade takes them (portfolio, then asset: `allocation_create`), so a split and a trade queue up and
    never deadlock. A trade waiting on a locked portfolio sees the split once it commits; a portfolio that moves
    the asset for the first time between the two steps is not locked: refused (ConflictError), to be retried."""
    holders = _portfolios_moving(asset_ids)
    portfolios_lock(actor=actor, portfolio_ids=holders, for_movement=False)
    list(Asset.objects.select_for_update().filter(pk__in=asset_ids).order_by("pk").values_list("pk", flat=True))
    if _portfolios_moving(asset_ids) - holders:
        raise ConflictError(SPLIT_HOLDERS_CHANGED)


def _portfolios_moving(asset_ids: set[int]) -> set[int]:
    moving = Allocation.objects.filter(asset_id__in=asset_ids).order_by()
    return set(moving.values_list("portfolio_id", flat=True).distinct())


def _pay_cash_in_lieu(*, actor: Any, split: Split) -> list[Allocation]:
    """With a cash-in-lieu price, each portfolio whose units after the split have a fractional part sells that
    fraction on the split's day at the price: a real sell with its cash settlement, marked as cash in lieu of the
    split. Holders are locked in primary-key order first. The fraction is taken to the quantity's ten places,
    rounded down: a ratio whose quotient does not terminate (1 for 3) leaves a remainder below 1e-10 units.
    Without a price, fractions are kept."""
    if split.cash_in_lieu_price is None:
        return []
    holders = asset_holders(allocations=Allocation.objects.all(), asset_id=split.asset_id, as_of=split.date - ONE_DAY)
    if not holders:
        return []
    locked = portfolios_lock(actor=actor, portfolio_ids={holder["portfolio"] for holder in holders})
    paid = []
    with localcontext() as context:
        context.prec = 2 * QUANTITY_DIGITS
        for holder in sorted(holders, key=lambda h: h["portfolio"]):
            after = holder["quantity"] * split.new_units / split.old_units
            fraction = (after - after.to_integral_value(rounding=ROUND_FLOOR)).quantize(
                QUANTITY_QUANTUM, rounding=ROUND_DOWN
            )
            if fraction <= 0:
                continue
            paid.append(
                allocation_create(
                    actor=actor,
                    portfolio=locked[holder["portfolio"]],
                    asset=split.asset,
                    kind=Allocation.Kind.SELL,
                    quantity=fraction,
                    price=split.cash_in_lieu_price,
                    date=split.date,
                    notes=f"Cash in lieu of {fraction} units: split {split}",
                    cash_in_lieu_of=split,
                )
            )
    return paid


def _take_back_cash_in_lieu(*, actor: Any, split: Split) -> None:
    sales = list(split.cash_in_lieu.select_related("settlement").order_by("portfolio_id", "pk"))
    if not sales:
        return
    portfolios_lock(actor=actor, portfolio_ids={sale.portfolio_id for sale in sales}, for_movement=False)
    for sale in sales:
        _delete(actor=actor, allocation=sale)
        portfolios_history_changed(portfolios=[sale.portfolio_id], since=sale.date)


def _holders_units_check(*, asset_id: int, since: datetime.date) -> None:
    """ConflictError when any holder of the asset is short of units on a day from `since` on: one query."""
    holders = sorted(_portfolios_moving({asset_id}))
    found = units_shortfalls(since={(portfolio_id, asset_id): since for portfolio_id in holders})
    if found:
        (portfolio_id, _), shortfall = min(found.items())
        raise ConflictError(
            short_position_message(
                portfolio=Portfolio.objects.get(pk=portfolio_id),
                asset=Asset.objects.get(pk=asset_id),
                shortfall=shortfall,
            ),
            field="new_units",
        )


# --- Daily values -----------------------------------------------------------------------------

# Portfolios rebuilt per transaction: bounds the locks held and the rows written at once.
DAILY_VALUES_BATCH = 200


def daily_values_refresh(*, portfolio_ids: Iterable[int] | None = None, until: datetime.date | None = None) -> int:
    """Brings the daily value table of the stale portfolios (all, or those of `portfolio_ids`) up to date through
    `until` (today by default); how many portfolios were rebuilt. Untouched portfolios cost nothing: only those
    whose `history_changed_from` is on or before `until` are read.

    Each is rebuilt from its `history_changed_from` (rows from that day on deleted, recomputed from scratch,
    inserted; see holdings.daily_values), and its marker then moves past `until`: the rows are current through
    `until`, so the marker still means "stale from this day on" (a later day, or a write, makes it stale again).
    A portfolio without any movement has nothing to go stale: its marker is cleared.

    Runs from the `holdings.daily_values_refresh` job (every minute by default), when a reader finds its portfolios
    stale (`holdings.selectors.daily_values_of`: reads never wait for the job) and from
    `manage.py refresh_daily_values`.
    """
    until = until or timezone.localdate()
    stale = Portfolio.objects.filter(history_changed_from__lte=until)
    if portfolio_ids is not None:
        stale = stale.filter(pk__in=list(portfolio_ids))
    ids = list(stale.order_by("pk").values_list("pk", flat=True))
    rebuilt = 0
    for start in range(0, len(ids), DAILY_VALUES_BATCH):
        rebuilt += _daily_values_rebuild(ids[start : start + DAILY_VALUES_BATCH], until=until)
    return rebuilt


@transaction.atomic
def _daily_values_rebuild(ids: list[int], *, until: datetime.date) -> int:
    # Locked in primary-key order, as every writer locks them: a movement written meanwhile waits for the new rows
    # and then marks them stale itself; two refreshes of one portfolio queue up instead of inserting twice.
    stale = list(
        Portfolio.objects.select_for_update()
        .filter(pk__in=ids, history_changed_from__lte=until)
        .order_by("pk")
        .values_list("pk", "base_currency", "history_changed_from", "data_version")
    )
    targets = [daily_values.Target(pk, base, since) for pk, base, since, _ in stale if since is not None]
    with_history = daily_values.rebuild(targets, until=until)

    def unchanged(pks: set[int]) -> Q:
        # Compare and set: a version that moved means a write this rebuild may not have seen; its marker stays.
        condition = Q(pk__in=[])
        for pk, _, _, version in stale:
            if pk in pks:
                condition |= Q(pk=pk, data_version=version)
        return condition

    Portfolio.objects.filter(unchanged(with_history)).update(history_changed_from=until + datetime.timedelta(days=1))
    Portfolio.objects.filter(unchanged({pk for pk, *_ in stale} - with_history)).update(history_changed_from=None)
    return len(stale)


# --- Position snapshots -----------------------------------------------------------------------


@transaction.atomic
def position_snapshots_refresh(*, portfolio_ids: Iterable[int], cost_method: str, currency: str) -> int:
    """Refolds the portfolios of `portfolio_ids` whose position snapshot (by `cost_method`, in `currency`) is not
    current, and stores it (see holdings.valuation.snapshot); how many were refolded.

    Locked in primary-key order, as every writer locks them, and each one's data version read under that lock,
    before its movements: a write that commits while the fold reads is then either seen by the fold or later than
    the version stored, so the snapshot is never labelled newer than what it holds. Readers refreshing the same
    portfolio queue up; the second finds the first one's snapshot current and folds nothing.

    Until the job queue exists this runs when a reader asks (`holdings.valuation`)."""
    versions = dict(
        Portfolio.objects.select_for_update()
        .filter(pk__in=list(portfolio_ids))
        .order_by("pk")
        .values_list("pk", "data_version")
    )
    fresh = position_snapshots.current(portfolio_ids=list(versions), cost_method=cost_method, currency=currency)
    todo = {pk: version for pk, version in versions.items() if pk not in fresh}
    position_snapshots.rebuild(versions=todo, cost_method=cost_method, currency=currency)
    return len(todo)
