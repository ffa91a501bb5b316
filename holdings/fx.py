"""Exchange rates as published, and the rate between any two currencies on any day.

The rate of a day is the latest published on or before it, and every answer says which day that was. A pair's
inverse is derived (1 / rate); two currencies with no rate between them are crossed through the pivot currency
(`settings.FX_PIVOT_CURRENCY`, EUR by default, as central banks publish against their own currency), the
answer dated by its older leg. A missing rate is never taken as 1: it raises `MissingRate`.

A `RateBook` reads every rate it may need in one query and answers any number of questions from memory, so a
valuation asks the database once whatever the number of trades and days it converts.
"""

import bisect
import datetime
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db.models import Q

from .models import FxRate


class MissingRate(Exception):
    """No rate (direct, inverse or through the pivot) was published on or before the day asked for."""

    def __init__(self, base: str, quote: str, on: datetime.date) -> None:
        super().__init__(f"No {base}/{quote} rate was published on or before {on}.")
        self.base, self.quote, self.on = base, quote, on


@dataclass(frozen=True)
class Rate:
    """Units of `quote` for one unit of `base`, as of `date` (the publication day used; for a cross, the older
    leg's), and `via`: the pivot currency of a cross, else None."""

    base: str
    quote: str
    rate: Decimal
    date: datetime.date
    via: str | None = None

    def convert(self, amount: Decimal) -> Decimal:
        return amount * self.rate


@dataclass
class _Series:
    dates: list[datetime.date] = field(default_factory=list)
    rates: list[Decimal] = field(default_factory=list)

    def on(self, day: datetime.date) -> tuple[datetime.date, Decimal] | None:
        index = bisect.bisect_right(self.dates, day)
        return (self.dates[index - 1], self.rates[index - 1]) if index else None


class RateBook:
    """The published rates among `currencies` (and the pivot) up to `until`, loaded in one query."""

    def __init__(
        self, currencies: Iterable[str], until: datetime.date, pivot: str | None = None, *, latest_only: bool = False
    ) -> None:
        """`latest_only`: only each pair's latest rate on or before `until`, for a caller that asks for rates as of
        `until` alone (the answers on that day are the same; any earlier day would find none or a wrong one)."""
        self.pivot = pivot or settings.FX_PIVOT_CURRENCY
        wanted = sorted({*currencies, self.pivot})
        self.series: dict[tuple[str, str], _Series] = {}
        rows: Iterable[tuple[str, str, datetime.date, Decimal]]
        if latest_only:
            rows = [(fx.base, fx.quote, fx.date, fx.rate) for fx in FxRate.objects.raw(*_latest_sql(wanted, until))]
        else:
            rows = (
                FxRate.objects.filter(Q(base__in=wanted) & Q(quote__in=wanted), date__lte=until)
                .order_by("base", "quote", "date")
                .values_list("base", "quote", "date", "rate")
            )
        for base, quote, date, rate in rows:
            series = self.series.setdefault((base, quote), _Series())
            series.dates.append(date)
            series.rates.append(rate)

    def _pair(self, base: str, quote: str, on: datetime.date) -> tuple[datetime.date, Decimal] | None:
        """A direct or inverse rate, whichever was published later (the most recent information)."""
        found = []
        if (direct := self.series.get((base, quote))) and (hit := direct.on(on)):
            found.append(hit)
        if (inverse := self.series.get((quote, base))) and (hit := inverse.on(on)):
            found.append((hit[0], Decimal(1) / hit[1]))
        return max(found, key=lambda hit: hit[0]) if found else None

    def rate(self, base: str, quote: str, on: datetime.date) -> Rate:
        """The rate from `base` to `quote` as of the end of `on`; MissingRate if none can be derived."""
        if base == quote:
            return Rate(base, quote, Decimal(1), on)
        if (hit := self._pair(base, quote, on)) is not None:
            return Rate(base, quote, hit[1], hit[0])
        if self.pivot not in (base, quote):
            first, second = self._pair(base, self.pivot, on), self._pair(self.pivot, quote, on)
            if first is not None and second is not None:
                return Rate(base, quote, first[1] * second[1], min(first[0], second[0]), via=self.pivot)
        raise MissingRate(base, quote, on)


def _latest_sql(currencies: list[str], until: datetime.date) -> tuple[str, list[Any]]:
    """Each pair's latest rate on or before `until` (the columns a RateBook reads): per ordered pair of
    `currencies`, one probe of the pair's (base, quote, date) index for its latest date, so that the cost grows with
    the number of pairs, never with the years of history (a grouped scan of every rate up to `until` did)."""
    table = FxRate._meta.db_table
    pairs = [(base, quote) for base in currencies for quote in currencies if base != quote]
    if not pairs:
        # No pair to look up (one currency): a query that answers nothing, so the caller's one query stays one.
        return f"SELECT id, base, quote, date, rate FROM {table} WHERE 1 = 0", []
    values = ", ".join(["(%s, %s)"] * len(pairs))
    sql = (
        f"WITH pairs (base, quote) AS (VALUES {values}) "
        f"SELECT f.id, f.base, f.quote, f.date, f.rate FROM pairs p JOIN {table} f "
        "ON f.base = p.base AND f.quote = p.quote AND f.date = ("
        f"SELECT MAX(g.date) FROM {table} g WHERE g.base = p.base AND g.quote = p.quote AND g.date <= %s)"
    )
    return sql, [*(code for pair in pairs for code in pair), until]


def fx_rate(*, base: str, quote: str, on: datetime.date) -> Rate:
    """The rate from `base` to `quote` as of the end of `on` (one query)."""
    return RateBook([base, quote], until=on).rate(base, quote, on)
