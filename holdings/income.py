"""Income received by portfolios over a period: dividends (by asset) and interest (tied to no asset), each in the
report's currency at the rate of its payment day, by asset and by month.

What counts, and when:
- a dividend on its pay date: gross, withholding tax, net (the cash it posted), in its own currency converted;
- interest on its effective date, as posted (gross = net, no tax): a reversed posting and its reversal cancel
  out and are left out, as corrections count from their original's day.
Fees, taxes and tax refunds posted on their own are costs, not income, and are not in this report (they are in
the portfolio's returns through its cash).

A payment whose currency has no rate to the report's currency on or before its day is listed in `missing_fx` and
left out of every total: never converted at 1. Three queries whatever the number of payments: the dividends with
their assets, the interest, the rates.
"""

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from ledger.models import Transaction

from .fx import MissingRate, RateBook
from .models import Dividend

ZERO = Decimal(0)


@dataclass
class Amounts:
    gross: Decimal = ZERO
    tax: Decimal = ZERO
    net: Decimal = ZERO

    def add(self, gross: Decimal, tax: Decimal) -> None:
        self.gross += gross
        self.tax += tax
        self.net += gross - tax


@dataclass
class AssetIncome(Amounts):
    asset_id: int = 0
    ticker: str = ""
    name: str = ""
    payments: int = 0


@dataclass
class MonthIncome(Amounts):
    month: str = ""  # YYYY-MM
    dividends: Decimal = ZERO  # net
    interest: Decimal = ZERO


@dataclass(frozen=True)
class MissingPayment:
    kind: str  # "dividend" or "interest"
    date: datetime.date
    currency: str


@dataclass
class IncomeReport:
    currency: str
    start: datetime.date | None
    end: datetime.date
    totals: Amounts = field(default_factory=Amounts)
    dividends: Amounts = field(default_factory=Amounts)
    interest: Amounts = field(default_factory=Amounts)
    by_asset: list[AssetIncome] = field(default_factory=list)
    by_month: list[MonthIncome] = field(default_factory=list)
    missing_fx: list[MissingPayment] = field(default_factory=list)


def income(
    *, portfolio_ids: Sequence[int], currency: str, start: datetime.date | None, end: datetime.date
) -> IncomeReport:
    """The income of `portfolio_ids` together from the start of `start` (all history when None) to the end of
    `end`, in `currency`."""
    dividends = Dividend.objects.filter(portfolio_id__in=portfolio_ids, pay_date__lte=end)
    interest = Transaction.objects.filter(
        portfolio_id__in=portfolio_ids,
        kind=Transaction.Kind.INTEREST,
        reverses__isnull=True,
        reversal__isnull=True,
        date__lte=end,
    )
    if start is not None:
        dividends = dividends.filter(pay_date__gte=start)
        interest = interest.filter(date__gte=start)
    dividend_rows = list(
        dividends.order_by("pay_date", "id").values_list(
            "pay_date", "currency", "gross", "withholding_tax", "asset_id", "asset__ticker", "asset__name"
        )
    )
    interest_rows = list(interest.order_by("date", "id").values_list("date", "currency", "amount"))
    currencies = {currency, *(row[1] for row in dividend_rows), *(row[1] for row in interest_rows)}
    book = RateBook(currencies, until=end)
    report = IncomeReport(currency=currency, start=start, end=end)
    assets: dict[int, AssetIncome] = {}
    months: dict[str, MonthIncome] = {}

    def converted(kind: str, day: datetime.date, paid_in: str, *amounts: Decimal) -> list[Decimal] | None:
        try:
            rate = book.rate(paid_in, currency, day).rate
        except MissingRate:
            report.missing_fx.append(MissingPayment(kind, day, paid_in))
            return None
        return [amount * rate for amount in amounts]

    def month_of(day: datetime.date) -> MonthIncome:
        key = f"{day:%Y-%m}"
        return months.setdefault(key, MonthIncome(month=key))

    for day, paid_in, gross, withheld, asset_id, ticker, name in dividend_rows:
        found = converted("dividend", day, paid_in, gross, withheld)
        if found is None:
            continue
        gross, withheld = found
        asset = assets.setdefault(asset_id, AssetIncome(asset_id=asset_id, ticker=ticker, name=name))
        asset.add(gross, withheld)
        asset.payments += 1
        month = month_of(day)
        month.add(gross, withheld)
        month.dividends += gross - withheld
        report.dividends.add(gross, withheld)
        report.totals.add(gross, withheld)
    for day, paid_in, amount in interest_rows:
        found = converted("interest", day, paid_in, amount)
        if found is None:
            continue
        (amount,) = found
        month = month_of(day)
        month.add(amount, ZERO)
        month.interest += amount
        report.interest.add(amount, ZERO)
        report.totals.add(amount, ZERO)
    report.by_asset = sorted(assets.values(), key=lambda a: (a.ticker, a.asset_id))
    report.by_month = [months[key] for key in sorted(months)]
    return report
