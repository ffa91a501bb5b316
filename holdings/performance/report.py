"""A portfolio's or a client's performance over a period, read from the daily value table (never recomputed from
the movements here), with named periods and an optional benchmark."""

import datetime
from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal, localcontext

from ..fx import MissingRate, RateBook
from ..models import Asset, Price
from ..selectors import daily_values_of
from .returns import (
    PRECISION,
    ZERO,
    Day,
    NoSolution,
    annualize,
    money_weighted_flows,
    simple_return,
    time_weighted,
    xirr,
)

ONE_DAY = datetime.timedelta(days=1)
# The named periods, each ending on the report's `end`. Calendar periods (MTD, YTD) start no earlier than the
# history; trailing ones (1Y, 3Y) claim their full length, so a shorter history leaves them unavailable.
MTD, YTD, ONE_YEAR, THREE_YEARS, SINCE_INCEPTION = "MTD", "YTD", "1Y", "3Y", "since_inception"
PERIODS = (MTD, YTD, ONE_YEAR, THREE_YEARS, SINCE_INCEPTION)


@dataclass(frozen=True)
class SeriesDay:
    date: datetime.date
    value: Decimal
    inflow: Decimal
    outflow: Decimal
    complete: bool

    def day(self) -> Day:
        return Day(self.date, self.value, self.inflow, self.outflow)


@dataclass(frozen=True)
class Figures:
    """The returns over one period; None where a figure does not exist (see `returns`)."""

    start: datetime.date
    end: datetime.date
    available: bool
    start_value: Decimal | None = None
    end_value: Decimal | None = None
    inflows: Decimal | None = None
    outflows: Decimal | None = None
    gain: Decimal | None = None
    time_weighted: Decimal | None = None
    time_weighted_annualized: Decimal | None = None
    money_weighted: Decimal | None = None
    money_weighted_error: str | None = None
    simple: Decimal | None = None
    first_day: datetime.date | None = None


@dataclass(frozen=True)
class Period(Figures):
    name: str = ""


@dataclass(frozen=True)
class PerformanceDay:
    date: datetime.date
    value: Decimal
    inflow: Decimal
    outflow: Decimal
    complete: bool
    daily_return: Decimal | None
    cumulative_return: Decimal
    benchmark_cumulative_return: Decimal | None

    @property
    def external_flow(self) -> Decimal:
        return self.inflow - self.outflow


@dataclass(frozen=True)
class Benchmark:
    asset_id: int
    ticker: str
    name: str
    currency: str
    start: datetime.date | None  # the day whose close the return starts from
    start_close: Decimal | None  # in the report's currency
    end_close: Decimal | None
    cumulative: Decimal | None
    annualized: Decimal | None


@dataclass(frozen=True)
class MissingFx:
    base: str
    quote: str
    on: datetime.date


@dataclass(frozen=True)
class Performance:
    currency: str
    inception: datetime.date | None
    figures: Figures
    complete: bool
    incomplete_days: list[datetime.date]
    missing_fx: list[MissingFx]
    series: list[PerformanceDay]
    periods: list[Period]
    benchmark: Benchmark | None
    warnings: list[str] = field(default_factory=list)


class _Converter:
    """Each day's figure from a portfolio's base currency to the report's, at the day's rate (holdings.fx)."""

    def __init__(self, bases: set[str], currency: str, until: datetime.date) -> None:
        self.currency = currency
        self.book = RateBook(bases | {currency}, until=until) if bases - {currency} else None
        self.missing: dict[str, datetime.date] = {}

    def rate(self, base: str, day: datetime.date) -> Decimal | None:
        if base == self.currency:
            return Decimal(1)
        assert self.book is not None
        try:
            return self.book.rate(base, self.currency, day).rate
        except MissingRate:
            self.missing.setdefault(base, day)
            return None


def _combined(
    portfolios: Sequence[tuple[int, str]], currency: str, end: datetime.date, *, transfers_are_flows: bool
) -> tuple[list[SeriesDay], list[MissingFx]]:
    """The portfolios' daily values and flows in and out summed per day in `currency`, from the first day any has
    a row to `end`; transfers between the client's portfolios counted as flows or left out. A day on which a
    portfolio's rate to `currency` is missing is incomplete and leaves that portfolio out."""
    ids = [pk for pk, _ in portfolios]
    rows = daily_values_of(portfolio_ids=ids, start=datetime.date.min, end=end)
    converter = _Converter({base for _, base in portfolios}, currency, end)
    totals: dict[datetime.date, list[Decimal | bool]] = {}
    with localcontext() as context:
        context.prec = PRECISION
        for pk, base in portfolios:
            for row in rows[pk]:
                total = totals.setdefault(row.date, [ZERO, ZERO, ZERO, True])
                rate = converter.rate(base, row.date)
                if rate is None:
                    total[3] = False
                    continue
                inflow, outflow = row.inflow, row.outflow
                if not transfers_are_flows:
                    inflow, outflow = inflow - row.transfers_in, outflow - row.transfers_out
                total[0] += row.value * rate  # type: ignore[operator]
                total[1] += inflow * rate  # type: ignore[operator]
                total[2] += outflow * rate  # type: ignore[operator]
                total[3] = total[3] and row.complete
    days = [SeriesDay(day, *totals[day]) for day in sorted(totals)]  # type: ignore[arg-type]
    missing = [MissingFx(base, currency, day) for base, day in sorted(converter.missing.items())]
    return days, missing


def _figures(history: Sequence[SeriesDay], start: datetime.date, end: datetime.date) -> Figures:
    """The returns from the start of `start` to the end of `end`, over the history (all its days up to `end`)."""
    opening = ZERO
    period = []
    for day in history:
        if day.date < start:
            opening = day.value
        elif day.date <= end:
            period.append(day.day())
    if not period:
        return Figures(start=start, end=end, available=False)
    twr = time_weighted(opening, period)
    inflows = sum((day.inflow for day in period), ZERO)
    outflows = sum((day.outflow for day in period), ZERO)
    money_weighted, error = None, None
    try:
        money_weighted = xirr(money_weighted_flows(opening, period, start=start))
    except NoSolution as failure:
        error = str(failure)
    return Figures(
        start=start,
        end=end,
        available=True,
        start_value=opening,
        end_value=period[-1].value,
        inflows=inflows,
        outflows=outflows,
        gain=period[-1].value - opening - inflows + outflows,
        time_weighted=twr.cumulative if twr.first_day else None,
        time_weighted_annualized=twr.annualized,
        money_weighted=money_weighted,
        money_weighted_error=error,
        simple=simple_return(opening, period),
        first_day=twr.first_day,
    )


def _years_before(day: datetime.date, years: int) -> datetime.date:
    """The day after the same date `years` earlier (29 February going to the 28th): a trailing period of whole
    years ending on `day`."""
    try:
        earlier = day.replace(year=day.year - years)
    except ValueError:
        earlier = day.replace(year=day.year - years, day=28)
    return earlier + ONE_DAY


def _periods(history: Sequence[SeriesDay], inception: datetime.date, end: datetime.date) -> list[Period]:
    starts = {
        MTD: max(end.replace(day=1), inception),
        YTD: max(end.replace(month=1, day=1), inception),
        ONE_YEAR: _years_before(end, 1),
        THREE_YEARS: _years_before(end, 3),
        SINCE_INCEPTION: inception,
    }
    periods = []
    for name in PERIODS:
        start = starts[name]
        if start < inception:
            periods.append(Period(start=start, end=end, available=False, name=name))
        else:
            periods.append(Period(**vars(_figures(history, start, end)), name=name))
    return periods


def _benchmark(
    asset: Asset, currency: str, base_day: datetime.date, end: datetime.date, days: Sequence[datetime.date]
) -> tuple[Benchmark, dict[datetime.date, Decimal | None]]:
    """The asset's price return in `currency` (each close at its day's rate) from the close of `base_day` (the
    latest on or before it) to each of `days`."""
    closes = list(Price.objects.filter(asset=asset, date__lte=end).order_by("date").values_list("date", "close"))
    converter = _Converter({asset.currency}, currency, end)
    index = 0
    latest: Decimal | None = None
    start_close: Decimal | None = None
    wanted = sorted({base_day, *days})
    valued: dict[datetime.date, Decimal | None] = {}
    for day in wanted:
        while index < len(closes) and closes[index][0] <= day:
            latest = closes[index][1]
            index += 1
        rate = converter.rate(asset.currency, day)
        valued[day] = latest * rate if latest is not None and rate is not None else None
    start_close = valued[base_day]
    returns: dict[datetime.date, Decimal | None] = {}
    with localcontext() as context:
        context.prec = PRECISION
        for day in days:
            close = valued[day]
            returns[day] = close / start_close - 1 if close is not None and start_close else None
    end_close = valued[days[-1]] if days else None
    cumulative = returns[days[-1]] if days else None
    benchmark = Benchmark(
        asset_id=asset.pk,
        ticker=asset.ticker,
        name=asset.name,
        currency=asset.currency,
        start=base_day,
        start_close=start_close,
        end_close=end_close,
        cumulative=cumulative,
        annualized=annualize(cumulative, (days[-1] - base_day).days) if cumulative is not None else None,
    )
    return benchmark, returns


def performance(
    *,
    portfolios: Sequence[tuple[int, str]],
    currency: str,
    start: datetime.date | None,
    end: datetime.date,
    transfers_are_flows: bool,
    benchmark: Asset | None = None,
) -> Performance:
    """The performance of `portfolios` ((id, base currency) pairs) together, in `currency`, from the start of
    `start` (the first day of their history when None or earlier) to the end of `end`; transfers between the
    client's portfolios are flows (of one portfolio) or left out (of the client's portfolios as one)."""
    history, missing_fx = _combined(portfolios, currency, end, transfers_are_flows=transfers_are_flows)
    if not history:
        day = start or end
        return Performance(
            currency=currency,
            inception=None,
            figures=Figures(start=day, end=end, available=False),
            complete=True,
            incomplete_days=[],
            missing_fx=missing_fx,
            series=[],
            periods=[Period(start=day, end=end, available=False, name=name) for name in PERIODS],
            benchmark=None,
            warnings=["No history: there is no movement on or before the end of the period."],
        )
    inception = history[0].date
    start = max(start or inception, inception)
    figures = _figures(history, start, end)
    in_period = [day for day in history if start <= day.date <= end]
    opening = next((day.value for day in reversed(history) if day.date < start), ZERO)
    twr = time_weighted(opening, [day.day() for day in in_period])
    bench: Benchmark | None = None
    bench_returns: dict[datetime.date, Decimal | None] = {}
    warnings = []
    if benchmark is not None and in_period:
        # Over the same days as the time-weighted return: from the close before its first day with a return.
        base_day = (twr.first_day or start) - ONE_DAY
        bench, bench_returns = _benchmark(benchmark, currency, base_day, end, [day.date for day in in_period])
        if bench.cumulative is None:
            warnings.append(f"The benchmark has no close (or no rate to {currency}) on or before {base_day}.")
    incomplete = [day.date for day in in_period if not day.complete]
    if incomplete:
        warnings.append(
            f"{len(incomplete)} day(s) lack a price or an exchange rate: their values, and the returns, leave out "
            "what could not be valued."
        )
    series = [
        PerformanceDay(
            date=day.date,
            value=day.value,
            inflow=day.inflow,
            outflow=day.outflow,
            complete=day.complete,
            daily_return=daily.daily,
            cumulative_return=daily.cumulative,
            benchmark_cumulative_return=bench_returns.get(day.date),
        )
        for day, daily in zip(in_period, twr.days, strict=True)
    ]
    return Performance(
        currency=currency,
        inception=inception,
        figures=figures,
        complete=not incomplete and not missing_fx,
        incomplete_days=incomplete,
        missing_fx=missing_fx,
        series=series,
        periods=_periods(history, inception, end),
        benchmark=bench,
        warnings=warnings,
    )
