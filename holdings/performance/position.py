"""One asset's money-weighted return in a portfolio or over a client's portfolios.

The flows, in the report's currency at each day's rate: each buy and transfer in paid (negative, its units at
their recorded price plus fees and taxes; a transfer recorded at price 0 at the day's close), each sell and
transfer out received (positive, less fees and taxes), each dividend paid over the period received on its pay date
(positive, net of withholding tax, in the dividend's own currency converted at that day's rate), the position's
market value at the start paid (negative, dated the day before the start) and at the end received (positive).

The return is given twice, as the leading desktop tool reports it: with taxes (what the investor kept), and with
taxes added back (each flow's taxes returned to it: a buy paid less, a sell received more), which is the return
of the investment before tax.
"""

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext

from django.db.models import Case, OuterRef, Subquery, Value, When

from portfolio_site.money import quantity_field

from ..fx import MissingRate, RateBook
from ..models import Allocation, Asset, Dividend, Price
from ..splits import SplitBook
from .returns import PRECISION, ZERO, NoSolution, xirr

ONE_DAY = datetime.timedelta(days=1)


@dataclass(frozen=True)
class Flow:
    date: datetime.date
    amount: Decimal  # in the report's currency: - paid in, + received
    kind: str  # an allocation kind, "dividend", or "start_value" / "end_value"
    taxes: Decimal = ZERO  # the taxes within `amount` (paid: >= 0), in the report's currency

    @property
    def before_taxes(self) -> Decimal:
        return self.amount + self.taxes


@dataclass(frozen=True)
class PositionPerformance:
    asset: Asset
    currency: str
    start: datetime.date | None
    end: datetime.date
    start_quantity: Decimal
    end_quantity: Decimal
    start_value: Decimal | None
    end_value: Decimal | None
    paid: Decimal
    received: Decimal
    gain: Decimal | None
    money_weighted: Decimal | None
    error: str | None
    flows: list[Flow]
    taxes: Decimal = ZERO
    money_weighted_before_taxes: Decimal | None = None


def _closes(asset_id: int, days: Sequence[datetime.date]) -> dict[datetime.date, Decimal | None]:
    """The latest close on or before each of `days`: one query."""
    rows = list(
        Price.objects.filter(asset_id=asset_id, date__lte=max(days)).order_by("date").values_list("date", "close")
    )
    found: dict[datetime.date, Decimal | None] = {}
    for day in days:
        found[day] = next((close for date, close in reversed(rows) if date <= day), None)
    return found


def position_performance(
    *, portfolio_ids: Sequence[int], asset: Asset, currency: str, start: datetime.date | None, end: datetime.date
) -> PositionPerformance:
    """The asset's flows and IRR in `portfolio_ids` together, from the start of `start` (its first movement when
    None) to the end of `end`."""
    close_on_day = (
        Price.objects.filter(asset_id=OuterRef("asset_id"), date__lte=OuterRef("date"))
        .order_by("-date")
        .values("close")[:1]
    )
    movements = list(
        Allocation.objects.filter(portfolio_id__in=portfolio_ids, asset=asset, date__lte=end)
        .annotate(
            close_on_day=Case(
                When(price=0, then=Subquery(close_on_day)), default=Value(None), output_field=quantity_field()
            )
        )
        .order_by("date", "id")
        .values_list("date", "kind", "quantity", "price", "fees", "close_on_day", "taxes")
    )
    if start is None:
        start = movements[0][0] if movements else end
    before = start - ONE_DAY
    closes = _closes(asset.pk, [before, end])
    dividends = list(
        Dividend.objects.filter(portfolio_id__in=portfolio_ids, asset=asset, pay_date__range=(start, end))
        .order_by("pay_date", "id")
        .values_list("pay_date", "gross", "withholding_tax", "currency")
    )
    book = RateBook({asset.currency, currency, *(row[3] for row in dividends)}, until=end)
    splits = SplitBook.of([asset.pk])
    errors: list[str] = []

    def rate(day: datetime.date, paid_in: str = asset.currency) -> Decimal:
        try:
            return book.rate(paid_in, currency, day).rate
        except MissingRate as missing:
            errors.append(str(missing))
            return ZERO

    flows: list[Flow] = []
    held_before = held = ZERO
    paid = received = ZERO
    with localcontext() as context:
        context.prec = PRECISION
        for day, kind, quantity, price, fees, close, taxes in movements:
            increases = kind in Allocation.INCREASES
            # Scaled (holdings.splits), so that a split between movements counts: units are read back per day.
            held += (quantity if increases else -quantity) * splits.scale(asset.pk, day)
            if day < start:
                held_before = held
                continue
            unit = price if price or close is None else close
            if not price and close is None:
                errors.append(f"A {kind} on {day} has no price and the asset no close on or before it.")
            gross = quantity * unit * rate(day)
            costs = (fees + taxes) * rate(day)
            amount = -(gross + costs) if increases else gross - costs
            flows.append(Flow(day, amount, kind, taxes * rate(day)))
            if amount < 0:
                paid -= amount
            else:
                received += amount
        for day, gross, withheld, paid_in in dividends:
            dividend_rate = rate(day, paid_in)
            flows.append(Flow(day, (gross - withheld) * dividend_rate, "dividend", withheld * dividend_rate))
            received += (gross - withheld) * dividend_rate
        flows.sort(key=lambda flow: flow.date)  # stable: a day's trades keep their order, its dividends follow

        def market_value(quantity: Decimal, day: datetime.date) -> Decimal | None:
            if not quantity:
                return ZERO
            close = closes[day]
            if close is None:
                errors.append(f"The asset has no close on or before {day}.")
                return None
            return quantity * close * rate(day)

        held_before, held = splits.units(asset.pk, held_before, before), splits.units(asset.pk, held, end)
        start_value, end_value = market_value(held_before, before), market_value(held, end)
        if start_value:
            flows.insert(0, Flow(before, -start_value, "start_value"))
        if end_value:
            flows.append(Flow(end, end_value, "end_value"))
        gain = None
        if start_value is not None and end_value is not None:
            gain = end_value + received - paid - start_value
    money_weighted = money_weighted_before_taxes = None
    error = None
    if errors:
        error = " ".join(dict.fromkeys(errors))
    else:
        try:
            money_weighted = xirr([(flow.date, flow.amount) for flow in flows])
            money_weighted_before_taxes = xirr([(flow.date, flow.before_taxes) for flow in flows])
        except NoSolution as failure:
            error = str(failure)
    return PositionPerformance(
        asset=asset,
        currency=currency,
        start=start,
        end=end,
        start_quantity=held_before,
        end_quantity=held,
        start_value=start_value,
        end_value=end_value,
        paid=paid,
        received=received,
        gain=gain,
        money_weighted=money_weighted,
        error=error,
        flows=flows,
        taxes=sum((flow.taxes for flow in flows), ZERO),
        money_weighted_before_taxes=money_weighted_before_taxes,
    )
