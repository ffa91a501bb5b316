"""The return figures, as pure functions of a daily series or a list of dated cash flows: no database, no Django.

Conventions (the README's Performance section says them in a client's words):

- A day's external flows are kept apart by direction (as the daily value table keeps them): what came in counts
  at the start of the day, what went out at its end, so a deposit and a withdrawal on the same day are never
  netted into one smaller flow. Each day is a sub-period of the time-weighted return,
  `(MVE + CFout) / (MVB + CFin) - 1`, MVB being the previous day's closing value; the days are chained.
- A day whose `MVB + CFin` is zero or less has no return (nothing was invested over it): it is skipped, so a
  period that starts at zero value starts its returns on the first day with value, and a portfolio sold out to
  zero and funded again chains its two lives without a division by zero.
- Annualized only for periods of a year (365 days) or more: `(1 + cumulative) ** (365 / days) - 1`; a shorter
  period's annualized figure would extrapolate, so it is None.
- The money-weighted return is the rate r for which the flows' present value is zero, `sum(a / (1 + r) ** t)`,
  t in years of 365 days (Excel's XIRR, actual/365). It is solved in binary floating point (Newton from 10%,
  then, failing that, bisection on a bracket found by scanning) and returned as a Decimal rounded to 10 places:
  a rate, not money, and a double's ~1e-15 relative error is far below the places reported.
- The simple return is the gain over the money put at risk: `(MVE - MVB - net flows) / (MVB + inflows)`.

Money stays Decimal; the exponent of the annualization runs in Decimal too (a positive base, so exact to the
context's precision).
"""

import datetime
import math
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext

ZERO = Decimal(0)
ONE = Decimal(1)
DAYS_IN_YEAR = 365
RATE_QUANTUM = Decimal("1e-10")
PRECISION = 40
_SOLVER_TOLERANCE = 1e-13
_MAX_NEWTON_STEPS = 100


@dataclass(frozen=True)
class Day:
    """One day of a value series: its closing value, and what came in from outside (counted at the day's start)
    and went out (at its end), each zero or more."""

    date: datetime.date
    value: Decimal
    inflow: Decimal
    outflow: Decimal


@dataclass(frozen=True)
class DailyReturn:
    date: datetime.date
    daily: Decimal | None  # None on a day without a return (nothing invested over it)
    cumulative: Decimal  # chained from the period's start through this day


@dataclass(frozen=True)
class TimeWeighted:
    cumulative: Decimal
    annualized: Decimal | None
    first_day: datetime.date | None  # the first day with a return: where the period effectively starts
    days: list[DailyReturn]


class NoSolution(ValueError):
    """The flows have no internal rate of return (none exists, or none could be found)."""


def time_weighted(opening: Decimal, series: Sequence[Day]) -> TimeWeighted:
    """The chained daily returns of `series`, `opening` being the value at the end of the day before its first.

    The annualization counts the days from the first day with a return to the last day of the series."""
    with localcontext() as context:
        context.prec = PRECISION
        growth, previous, first = ONE, opening, None
        days = []
        for day in series:
            invested = previous + day.inflow
            daily = None
            if invested > 0:
                daily = (day.value + day.outflow) / invested - 1
                growth *= 1 + daily
                first = first or day.date
            days.append(DailyReturn(day.date, daily, growth - 1))
            previous = day.value
        cumulative = growth - 1
        annualized = None
        if first is not None:
            annualized = annualize(cumulative, (series[-1].date - first).days + 1)
    return TimeWeighted(cumulative, annualized, first, days)


def annualize(cumulative: Decimal, days: int) -> Decimal | None:
    """The yearly rate that compounds to `cumulative` over `days`; None under a year, or for a total loss."""
    if days < DAYS_IN_YEAR or cumulative <= -1:
        return None
    with localcontext() as context:
        context.prec = PRECISION
        return (1 + cumulative) ** (Decimal(DAYS_IN_YEAR) / days) - 1


def simple_return(opening: Decimal, series: Sequence[Day]) -> Decimal | None:
    """Gain over the start value plus the inflows; None when nothing was put in."""
    inflows = sum((day.inflow for day in series), ZERO)
    net = inflows - sum((day.outflow for day in series), ZERO)
    at_risk = opening + inflows
    if not series or at_risk <= 0:
        return None
    with localcontext() as context:
        context.prec = PRECISION
        return (series[-1].value - opening - net) / at_risk


def money_weighted_flows(
    opening: Decimal, series: Sequence[Day], *, start: datetime.date
) -> list[tuple[datetime.date, Decimal]]:
    """A period's flows as an investor sees them: the start value and the inflows paid in (negative), the
    outflows and the end value received (positive). As in the time-weighted return, an inflow counts at the start
    of its day, which is the end of the day before: it is dated so, like the start value (the day before `start`);
    an outflow and the end value are dated their day. Without flows in between, both returns then agree."""
    before = datetime.timedelta(days=1)
    flows = []
    if opening:
        flows.append((start - before, -opening))
    for day in series:
        if day.inflow:
            flows.append((day.date - before, -day.inflow))
        if day.outflow:
            flows.append((day.date, day.outflow))
    if series and series[-1].value:
        flows.append((series[-1].date, series[-1].value))
    return flows


def xirr(flows: Sequence[tuple[datetime.date, Decimal]]) -> Decimal:
    """The annual rate r with `sum(amount / (1 + r) ** (days / 365)) == 0`, days counted from the first flow.

    NoSolution when the flows do not change sign (no rate can balance them) or no root is found."""
    amounts = [float(amount) for _, amount in flows if amount]
    if not any(a > 0 for a in amounts) or not any(a < 0 for a in amounts):
        raise NoSolution("The flows need money both paid in and paid out for a money-weighted return to exist.")
    origin = min(day for day, _ in flows)
    points = [((day - origin).days / DAYS_IN_YEAR, float(amount)) for day, amount in flows if amount]
    rate = _newton(points)
    if rate is None:
        rate = _bisect(points)
    if rate is None:
        raise NoSolution("No rate balances these flows.")
    with localcontext() as context:
        context.prec = 400  # a double reaches 1e308: room for all its digits and the ten places
        found = Decimal(repr(rate)).quantize(RATE_QUANTUM)
    return found.copy_abs() if found.is_zero() else found  # no "-0.0000000000" from a root a hair below zero


def _npv(points: Sequence[tuple[float, float]], rate: float) -> tuple[float, float]:
    """The present value at `rate` and its derivative."""
    value = slope = 0.0
    for years, amount in points:
        discounted = amount * (1 + rate) ** -years
        value += discounted
        slope -= years * discounted / (1 + rate)
    return value, slope


def _newton(points: Sequence[tuple[float, float]]) -> float | None:
    rate = 0.1
    try:
        for _ in range(_MAX_NEWTON_STEPS):
            value, slope = _npv(points, rate)
            if slope == 0 or not math.isfinite(value):
                return None
            step = value / slope
            rate -= step
            if rate <= -1 or not math.isfinite(rate):
                return None
            if abs(step) < _SOLVER_TOLERANCE * max(1.0, abs(rate)):
                return rate
    except (OverflowError, ZeroDivisionError):
        return None
    return None


def _bisect(points: Sequence[tuple[float, float]]) -> float | None:
    """Scans rates from just above -100% upwards for a change of sign of the present value, then halves it."""
    grid = [-1 + 10.0**-k for k in range(9, 0, -1)] + [x / 10 for x in range(-8, 101)] + [10.0**k for k in range(2, 7)]
    previous: tuple[float, float] | None = None
    for rate in sorted(set(grid)):
        try:
            value = _npv(points, rate)[0]
        except OverflowError:
            previous = None
            continue
        if not math.isfinite(value):
            previous = None
            continue
        if value == 0:
            return rate
        if previous is not None and (previous[1] < 0) != (value < 0):
            low, high, low_value = previous[0], rate, previous[1]
            for _ in range(200):
                middle = (low + high) / 2
                middle_value = _npv(points, middle)[0]
                if (middle_value < 0) == (low_value < 0):
                    low, low_value = middle, middle_value
                else:
                    high = middle
                if high - low < _SOLVER_TOLERANCE * max(1.0, abs(low)):
                    break
            return (low + high) / 2
        previous = (rate, value)
    return None
