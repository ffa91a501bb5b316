"""Realized gains of a tax year: every sale, its proceeds, cost, gain and holding period (the report an accountant
asks for each spring). A fold over the portfolios' movements up to the year's end (holdings.valuation.fold, splits
included), keeping each sell's detail.

- Proceeds are the sale's units times its price less its fees; cost is what the cost method (`average` or `fifo`)
  takes out of the position; gain = proceeds - cost. In the asset's currency, and in the base currency: proceeds at
  the sale day's rate, cost at each lot's own purchase day's rate (so the base gain counts the currency's move).
- Holding period, FIFO: per lot taken, from the day the lot was bought (or transferred in) to the sale day; a lot
  keeps its day across a split. Long term when the sale is more than one year after it (the sale day falls after
  the purchase day's anniversary; a 29 February purchase's anniversary is 1 March), short term otherwise.
- Holding period, average cost: one pool, whose units are not told apart; its acquisition day is the day the
  position was last opened from zero, and the whole sale is held from it (documented simplification: a partial
  rebuy into an open pool does not restart the clock).
- A cash-in-lieu sale (a split's fraction; holdings.services.split_create) is a sale like any other, marked.
- A rate missing for a holding makes that holding's base figures unknown: its sales show them as null and are left
  out of the base totals (listed in `missing_fx`), never counted as zero. Per-currency totals are always complete.
"""

import datetime
from collections.abc import Collection
from dataclasses import dataclass, field
from decimal import Decimal, localcontext

from .fx import MissingRate, RateBook
from .models import Allocation, Asset
from .valuation import load
from .valuation.fold import PRECISION, ZERO, Sale, fold

SHORT, LONG = "short", "long"


@dataclass(frozen=True)
class LotGain:
    currency: str
    acquired: datetime.date | None
    days_held: int | None
    term: str | None
    units: Decimal
    proceeds: Decimal
    cost: Decimal
    gain: Decimal
    gain_base: Decimal | None


@dataclass(frozen=True)
class SaleGain:
    allocation_id: int
    portfolio_id: int
    date: datetime.date
    asset_id: int
    ticker: str
    name: str
    currency: str
    units: Decimal
    proceeds: Decimal
    cost: Decimal
    gain: Decimal
    proceeds_base: Decimal | None
    cost_base: Decimal | None
    gain_base: Decimal | None
    cash_in_lieu_of: int | None
    lots: list[LotGain]


@dataclass
class CurrencyTotals:
    currency: str
    proceeds: Decimal = ZERO
    cost: Decimal = ZERO
    gain: Decimal = ZERO
    short_term_gain: Decimal = ZERO
    long_term_gain: Decimal = ZERO

    def add(self, proceeds: Decimal, cost: Decimal, gain: Decimal, lots: list[LotGain], base: bool) -> None:
        self.proceeds += proceeds
        self.cost += cost
        self.gain += gain
        for lot in lots:
            value = lot.gain_base if base else lot.gain
            if value is None:
                continue
            if lot.term == LONG:
                self.long_term_gain += value
            else:
                self.short_term_gain += value


@dataclass(frozen=True)
class RealizedGains:
    year: int
    start: datetime.date
    end: datetime.date
    currency: str
    cost_method: str
    sales: list[SaleGain]
    totals: CurrencyTotals
    by_currency: list[CurrencyTotals]
    missing_fx: list[MissingRate] = field(default_factory=list)


def term(acquired: datetime.date, sold: datetime.date) -> str:
    """LONG when `sold` is more than one year after `acquired` (after its first anniversary)."""
    try:
        anniversary = acquired.replace(year=acquired.year + 1)
    except ValueError:  # 29 February: the anniversary is 1 March
        anniversary = datetime.date(acquired.year + 1, 3, 1)
    return LONG if sold > anniversary else SHORT


def realized_gains(*, portfolio_ids: Collection[int], currency: str, year: int, cost_method: str) -> RealizedGains:
    """Every sale in the portfolios from 1 January to 31 December of `year`, with totals in `currency` (the base)
    and per asset currency. Four queries: movements, splits, rates, and the sold assets with their cash-in-lieu
    links."""
    start, end = datetime.date(year, 1, 1), datetime.date(year, 12, 31)
    events = load.events(portfolio_ids=portfolio_ids, as_of=end)
    rates = RateBook({currency, *(event.currency for event in events)}, until=end)
    holdings = fold(events, method=cost_method, rates=rates, currency=currency, with_sales=True)
    in_year: list[tuple[Sale, bool]] = []
    missing: list[MissingRate] = []
    for holding in holdings.values():
        missing.extend(holding.missing)
        for sale in holding.sales or ():
            if start <= sale.event.date <= end:
                in_year.append((sale, not holding.missing))
    sold_ids = [sale.event.id for sale, _ in in_year]
    links = dict(
        Allocation.objects.filter(pk__in=sold_ids, cash_in_lieu_of__isnull=False).values_list(
            "pk", "cash_in_lieu_of_id"
        )
    )
    assets = {
        row[0]: row
        for row in Asset.objects.filter(pk__in={sale.event.asset_id for sale, _ in in_year}).values_list(
            "pk", "ticker", "name"
        )
    }
    totals = CurrencyTotals(currency)
    by_currency: dict[str, CurrencyTotals] = {}
    sales = []
    with localcontext() as context:
        context.prec = PRECISION
        for sale, complete in sorted(in_year, key=lambda pair: (pair[0].event.date, pair[0].event.id)):
            event = sale.event
            lots = _lots(sale, complete)
            gain = sale.proceeds - sale.cost
            gain_base = sale.proceeds_value - sale.cost_value if complete else None
            sales.append(
                SaleGain(
                    allocation_id=event.id,
                    portfolio_id=event.portfolio_id,
                    date=event.date,
                    asset_id=event.asset_id,
                    ticker=assets[event.asset_id][1],
                    name=assets[event.asset_id][2],
                    currency=event.currency,
                    units=event.quantity,
                    proceeds=sale.proceeds,
                    cost=sale.cost,
                    gain=gain,
                    proceeds_base=sale.proceeds_value if complete else None,
                    cost_base=sale.cost_value if complete else None,
                    gain_base=gain_base,
                    cash_in_lieu_of=links.get(event.id),
                    lots=lots,
                )
            )
            by_currency.setdefault(event.currency, CurrencyTotals(event.currency)).add(
                sale.proceeds, sale.cost, gain, lots, base=False
            )
            if gain_base is not None:
                totals.add(sale.proceeds_value, sale.cost_value, gain_base, lots, base=True)
    unique_missing = list({(m.base, m.quote, m.on): m for m in missing}.values())
    return RealizedGains(
        year=year,
        start=start,
        end=end,
        currency=currency,
        cost_method=cost_method,
        sales=sales,
        totals=totals,
        by_currency=[by_currency[code] for code in sorted(by_currency)],
        missing_fx=unique_missing,
    )


def _lots(sale: Sale, complete: bool) -> list[LotGain]:
    """The sale split over the lots (or the pool share) it took, proceeds shared by units."""
    units = sum((lot.quantity for lot in sale.lots), ZERO)
    found = []
    for lot in sale.lots:
        share = lot.quantity / units if units else ZERO
        proceeds = sale.proceeds * share
        days = (sale.event.date - lot.acquired).days if lot.acquired else None
        found.append(
            LotGain(
                currency=sale.event.currency,
                acquired=lot.acquired,
                days_held=days,
                term=term(lot.acquired, sale.event.date) if lot.acquired else None,
                units=lot.quantity,
                proceeds=proceeds,
                cost=lot.cost,
                gain=proceeds - lot.cost,
                gain_base=sale.proceeds_value * share - lot.cost_value if complete else None,
            )
        )
    return found
