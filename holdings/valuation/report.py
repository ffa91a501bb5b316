"""A valuation: the fold's holdings priced and converted, with cash, totals and what could not be valued."""

import datetime
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from typing import Any

from django.db.models import QuerySet

from ..fx import MissingRate, Rate, RateBook
from . import load, snapshot
from .fold import PRECISION, ZERO, Holding, fold


@dataclass(frozen=True)
class MissingFx:
    """A rate the valuation needed and nothing could be derived for; `asset_id` None for cash."""

    base: str
    quote: str
    on: datetime.date
    asset_id: int | None


@dataclass(frozen=True)
class PositionValue:
    """One asset over the valued portfolios. Figures without `_value` are in the asset's currency; those with it
    in the valuation currency (None when a price or rate is missing)."""

    asset_id: int
    ticker: str
    name: str
    currency: str
    quantity: Decimal
    cost: Decimal
    average_cost: Decimal | None
    realized_gain: Decimal
    last_price: Decimal | None
    last_price_date: datetime.date | None
    stale: bool
    market_value: Decimal | None
    unrealized_gain: Decimal | None
    fx_rate: Decimal | None
    market_value_value: Decimal | None
    cost_value: Decimal | None
    unrealized_gain_value: Decimal | None
    price_effect: Decimal | None
    currency_effect: Decimal | None
    realized_gain_value: Decimal | None
    weight: Decimal | None
    unpriced: bool
    missing_fx: bool

    @property
    def counted(self) -> bool:
        """Whether the position is in the totals: priced, and every rate it needed found."""
        return not (self.unpriced or self.missing_fx)


@dataclass(frozen=True)
class CashValue:
    currency: str
    amount: Decimal
    fx_rate: Decimal | None
    value: Decimal | None


@dataclass(frozen=True)
class Totals:
    holdings: Decimal
    cash: Decimal
    total: Decimal
    cost: Decimal
    unrealized_gain: Decimal
    price_effect: Decimal
    currency_effect: Decimal
    realized_gain: Decimal


@dataclass(frozen=True)
class Valuation:
    currency: str
    as_of: datetime.date
    cost_method: str
    positions: list[PositionValue]
    cash: list[CashValue]
    totals: Totals
    missing_fx: list[MissingFx] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def unpriced(self) -> list[PositionValue]:
        return [position for position in self.positions if position.unpriced]


@dataclass
class _Combined:
    """An asset's holdings in several portfolios, summed: each portfolio's cost method applied on its own first."""

    quantity: Decimal = ZERO
    cost: Decimal = ZERO
    cost_value: Decimal = ZERO
    realized: Decimal = ZERO
    realized_value: Decimal = ZERO
    missing: list[MissingRate] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(self, holding: Holding | snapshot.StoredHolding) -> None:
        self.quantity += holding.quantity
        self.cost += holding.cost
        self.cost_value += holding.cost_value
        self.realized += holding.realized
        self.realized_value += holding.realized_value
        self.missing.extend(holding.missing)
        self.warnings.extend(holding.warnings)


def valuate(
    *,
    portfolio_ids: Collection[int],
    cash: Mapping[str, Decimal] | Callable[[], Mapping[str, Decimal]],
    currency: str,
    as_of: datetime.date,
    cost_method: str,
    stale_days: int,
    snapshots: bool = True,
    cash_in_snapshot: bool = False,
) -> Valuation:
    """The portfolios' positions and `cash` (per currency, as the ledger's balances give it, or what reads them)
    valued in `currency` at the end of `as_of`. Each portfolio's holdings are read from its current position
    snapshot when that holds every movement up to `as_of` (`snapshots`: the default), else folded from its
    movements. `cash_in_snapshot` (one portfolio's own balances): the snapshot's stored balances serve when they
    are `as_of`'s, and `cash` is not read. Three queries when the snapshots are current and hold the day's cash
    and closes: snapshots, their holdings with their assets and closes, rates."""
    holdings: list[Holding | snapshot.StoredHolding] = []
    to_fold = list(portfolio_ids)
    read_assets: QuerySet[Any] | None = None
    stored_quotes: dict[int, load.AssetQuote] | None = None
    if snapshots:
        read = snapshot.holdings_as_of(
            portfolio_ids=portfolio_ids, cost_method=cost_method, currency=currency, as_of=as_of
        )
        holdings, to_fold, read_assets = list(read.holdings), read.to_fold, read.assets
        stored_quotes = read.quotes if not to_fold else None
        if cash_in_snapshot and len(portfolio_ids) == 1 and not to_fold and read.cash:
            (cash,) = read.cash.values()
    if callable(cash):
        cash = cash()
    events = load.events(portfolio_ids=to_fold, as_of=as_of) if to_fold else []
    rates = RateBook(
        {currency, *cash, *(event.currency for event in events), *(holding.currency for holding in holdings)},
        until=as_of,
        # Nothing to fold: only the day's rates are asked for (the snapshots hold the costs at the trades' rates).
        latest_only=not events,
    )
    holdings.extend(fold(events, method=cost_method, rates=rates, currency=currency).values())
    if stored_quotes is not None:
        quotes = stored_quotes
    else:
        quotes = load.quotes(
            asset_ids=read_assets if read_assets is not None and not to_fold else {h.asset_id for h in holdings},
            as_of=as_of,
        )
    combined: dict[int, _Combined] = {}
    for holding in sorted(holdings, key=lambda each: (each.portfolio_id, each.asset_id)):
        combined.setdefault(holding.asset_id, _Combined()).add(holding)

    missing_fx: list[MissingFx] = []
    warnings: list[str] = []
    stale_before = as_of - datetime.timedelta(days=stale_days)
    day_rates = _Memo(rates)
    with localcontext() as context:
        context.prec = PRECISION
        # Each position's figures first, built once the total (for its weight) is known: one object per position.
        drafts = [
            _position(quotes[asset_id], holding, currency, as_of, stale_before, day_rates, missing_fx, warnings)
            for asset_id, holding in combined.items()
        ]
        cash_values = [
            _cash(code, amount, currency, as_of, day_rates, missing_fx) for code, amount in sorted(cash.items())
        ]
        holdings_value = sum((d["market_value_value"] or ZERO for d in drafts if _counted(d)), ZERO)
        cash_value = sum((c.value for c in cash_values if c.value is not None), ZERO)
        total = holdings_value + cash_value
        positions = [PositionValue(**draft, weight=_weight(draft, total)) for draft in drafts]
        counted = [position for position in positions if position.counted]
        totals = Totals(
            holdings=holdings_value,
            cash=cash_value,
            total=total,
            cost=sum((p.cost_value or ZERO for p in counted), ZERO),
            unrealized_gain=sum((p.unrealized_gain_value or ZERO for p in counted), ZERO),
            price_effect=sum((p.price_effect or ZERO for p in counted), ZERO),
            currency_effect=sum((p.currency_effect or ZERO for p in counted), ZERO),
            realized_gain=sum((p.realized_gain_value or ZERO for p in counted), ZERO),
        )
    for missing in missing_fx:
        warnings.append(f"No {missing.base}/{missing.quote} rate on or before {missing.on}: left out of the totals.")
    positions.sort(key=lambda position: (position.ticker, position.asset_id))
    return Valuation(currency, as_of, cost_method, positions, cash_values, totals, missing_fx, warnings)


class _Memo:
    """A RateBook's rates, each pair and day looked up once (500 positions ask for a handful of rates): the same
    Rate, or a MissingRate raised again, as the book gives under the caller's decimal context."""

    def __init__(self, rates: RateBook) -> None:
        self.rates = rates
        self.found: dict[tuple[str, str, datetime.date], Rate | None] = {}

    def rate(self, base: str, quote: str, on: datetime.date) -> Rate:
        key = (base, quote, on)
        if key not in self.found:
            try:
                self.found[key] = self.rates.rate(base, quote, on)
            except MissingRate:
                self.found[key] = None
        found = self.found[key]
        if found is None:
            raise MissingRate(base, quote, on)
        return found


def _position(
    quote: load.AssetQuote,
    holding: _Combined,
    currency: str,
    as_of: datetime.date,
    stale_before: datetime.date,
    rates: "_Memo",
    missing_fx: list[MissingFx],
    warnings: list[str],
) -> dict[str, Any]:
    """A PositionValue's fields but its weight."""
    warnings.extend(holding.warnings)
    quantity, cost = holding.quantity, holding.cost
    held = quantity != 0
    unpriced = held and quote.close is None
    if unpriced:
        warnings.append(f"{quote.ticker}: no price on or before {as_of}: left out of the totals.")
    stale = held and quote.date is not None and quote.date < stale_before
    if stale:
        warnings.append(f"{quote.ticker}: the latest price is of {quote.date}, older than the stale limit.")
    market_value = None if unpriced else quantity * (quote.close or ZERO)

    missing = list(holding.missing)
    fx_rate: Decimal | None = None
    try:
        fx_rate = rates.rate(quote.currency, currency, as_of).rate
    except MissingRate as unconvertible:
        if held:
            missing.append(unconvertible)
    missing_fx.extend(MissingFx(each.base, each.quote, each.on, quote.id) for each in missing)

    value_known = not missing and not unpriced
    market_value_value = cost_value = unrealized_value = price_effect = currency_effect = realized_value = None
    if value_known and market_value is not None:
        rate = fx_rate or ZERO  # a closed position needs no rate of the day: its figures below are zero anyway
        market_value_value = market_value * rate
        cost_value = holding.cost_value
        unrealized_value = market_value_value - cost_value
        # (P1 - P0) q FX1 and P0 q (FX1 - FX0), where P0 q is the cost and P0 q FX0 the cost at the trades' rates.
        price_effect = (market_value - cost) * rate
        currency_effect = cost * rate - cost_value
        realized_value = holding.realized_value
    return {
        "asset_id": quote.id,
        "ticker": quote.ticker,
        "name": quote.name,
        "currency": quote.currency,
        "quantity": quantity,
        "cost": cost,
        "average_cost": cost / quantity if quantity > 0 else None,
        "realized_gain": holding.realized,
        "last_price": quote.close,
        "last_price_date": quote.date,
        "stale": stale,
        "market_value": market_value,
        "unrealized_gain": None if market_value is None else market_value - cost,
        "fx_rate": fx_rate,
        "market_value_value": market_value_value,
        "cost_value": cost_value,
        "unrealized_gain_value": unrealized_value,
        "price_effect": price_effect,
        "currency_effect": currency_effect,
        "realized_gain_value": realized_value,
        "unpriced": unpriced,
        "missing_fx": bool(missing),
    }


def _cash(
    code: str, amount: Decimal, currency: str, as_of: datetime.date, rates: "_Memo", missing_fx: list[MissingFx]
) -> CashValue:
    try:
        rate = rates.rate(code, currency, as_of).rate
    except MissingRate as error:
        missing_fx.append(MissingFx(error.base, error.quote, error.on, None))
        return CashValue(code, amount, None, None)
    return CashValue(code, amount, rate, amount * rate)


def _counted(draft: dict[str, Any]) -> bool:
    """`PositionValue.counted` of a draft."""
    return not (draft["unpriced"] or draft["missing_fx"])


def _weight(draft: dict[str, Any], total: Decimal) -> Decimal | None:
    if not _counted(draft) or total == 0 or draft["market_value_value"] is None:
        return None
    return draft["market_value_value"] / total
