"""Positions and valuation of portfolios and clients: a fold over their movements (`fold`), fed by a constant
number of queries (`load`), priced and converted (`report`). See the README's Valuation section."""

import datetime

from django.conf import settings

from clients.models import Client, Portfolio
from ledger.selectors import client_balances, portfolio_balances

from .fold import AVERAGE, COST_METHODS, FIFO, SAME_DAY_ORDER
from .report import CashValue, MissingFx, PositionValue, Totals, Valuation, valuate

__all__ = [
    "AVERAGE",
    "COST_METHODS",
    "FIFO",
    "SAME_DAY_ORDER",
    "CashValue",
    "MissingFx",
    "PositionValue",
    "Totals",
    "Valuation",
    "client_valuation",
    "portfolio_valuation",
]


def portfolio_valuation(
    *, portfolio: Portfolio, as_of: datetime.date, currency: str | None = None, cost_method: str = AVERAGE
) -> Valuation:
    """One portfolio's positions and cash at the end of `as_of`, in `currency` (its base currency by default)."""
    return valuate(
        portfolio_ids=[portfolio.pk],
        cash=lambda: portfolio_balances(portfolio_id=portfolio.pk, as_of=as_of),
        currency=currency or portfolio.base_currency,
        as_of=as_of,
        cost_method=cost_method,
        stale_days=settings.VALUATION_STALE_PRICE_DAYS,
        cash_in_snapshot=True,
    )


def client_valuation(
    *,
    client: Client,
    portfolio_ids: list[int],
    as_of: datetime.date,
    currency: str | None = None,
    cost_method: str = AVERAGE,
) -> Valuation:
    """All of a client's portfolios (`portfolio_ids`, which the caller has read already) together, in `currency`
    (the client's base currency by default). An asset held in two portfolios is one position: each portfolio's
    cost method runs on its own movements (a FIFO lot never crosses portfolios), then quantities, costs and gains
    are summed."""
    return valuate(
        portfolio_ids=portfolio_ids,
        cash=client_balances(client_id=client.pk, as_of=as_of),
        currency=currency or client.base_currency,
        as_of=as_of,
        cost_method=cost_method,
        stale_days=settings.VALUATION_STALE_PRICE_DAYS,
    )
