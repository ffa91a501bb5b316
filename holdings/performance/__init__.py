"""Performance of portfolios, clients and positions: returns computed from the daily value table (`report`), per
asset from its trades (`position`), with the math kept pure (`returns`). See the README's Performance section."""

import datetime

from clients.models import Client, Portfolio

from ..models import Asset
from .position import Flow, PositionPerformance, position_performance
from .report import PERIODS, Benchmark, Figures, MissingFx, Performance, PerformanceDay, Period, performance
from .returns import NoSolution, xirr

__all__ = [
    "PERIODS",
    "Benchmark",
    "Figures",
    "Flow",
    "MissingFx",
    "NoSolution",
    "Performance",
    "PerformanceDay",
    "Period",
    "PositionPerformance",
    "client_performance",
    "portfolio_performance",
    "position_performance",
    "xirr",
]


def portfolio_performance(
    *,
    portfolio: Portfolio,
    start: datetime.date | None = None,
    end: datetime.date,
    currency: str | None = None,
    benchmark: Asset | None = None,
) -> Performance:
    """One portfolio's performance, in `currency` (its base currency by default)."""
    return performance(
        portfolios=[(portfolio.pk, portfolio.base_currency)],
        currency=currency or portfolio.base_currency,
        start=start,
        end=end,
        benchmark=benchmark,
    )


def client_performance(
    *,
    client: Client,
    portfolios: list[tuple[int, str]],
    start: datetime.date | None = None,
    end: datetime.date,
    currency: str | None = None,
    benchmark: Asset | None = None,
) -> Performance:
    """All of a client's portfolios ((id, base currency) pairs the caller has read) as one, in `currency` (the
    client's base currency by default): each day's values and flows summed, each converted from its portfolio's
    base currency at the day's rate. A transfer between two of its portfolios is then a flow out of one and into
    the other on the same day, and cancels out: it is no external flow of the client."""
    return performance(
        portfolios=portfolios,
        currency=currency or client.base_currency,
        start=start,
        end=end,
        benchmark=benchmark,
    )
