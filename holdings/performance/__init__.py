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
    """One portfolio's performance, in `currency` (its base currency by default). Transfers from and to the
    client's other portfolios are flows of this one."""
    return performance(
        portfolios=[(portfolio.pk, portfolio.base_currency)],
        transfers_are_flows=True,
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
    base currency at the day's rate. A transfer between two of its portfolios is no external flow of the client:
    both its legs are left out."""
    return performance(
        portfolios=portfolios,
        transfers_are_flows=False,
        currency=currency or client.base_currency,
        start=start,
        end=end,
        benchmark=benchmark,
    )
