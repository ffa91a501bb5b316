import datetime
from decimal import Decimal
from typing import Any

import factory
from factory.django import DjangoModelFactory

from clients.tests.factories import ClientFactory, main_portfolio
from ledger.models import CashHold, Transaction


def place(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Fills in a movement's portfolio and client so that they agree: the given portfolio's client, or the given
    (or a new) client's main portfolio."""
    portfolio = kwargs.get("portfolio")
    if portfolio is None:
        portfolio = main_portfolio(kwargs.get("client") or ClientFactory())
    kwargs["portfolio"], kwargs["client"] = portfolio, portfolio.client
    return kwargs


class TransactionFactory(DjangoModelFactory):
    """A posted deposit by default, in the client's main portfolio unless given one. Rows made here bypass the
    services: use them to set up history."""

    class Meta:
        model = Transaction

    client = None
    portfolio = None
    kind = Transaction.Kind.DEPOSIT
    amount = Decimal("1000.0000")
    currency = None
    date = datetime.date(2026, 1, 15)

    @classmethod
    def _adjust_kwargs(cls, **kwargs: Any) -> dict[str, Any]:
        kwargs = place(kwargs)
        kwargs["currency"] = kwargs["currency"] or kwargs["client"].base_currency
        return kwargs


class CashHoldFactory(DjangoModelFactory):
    """Cash on hold in the client's main portfolio unless given one, in its client's base currency. Rows made here
    bypass the services (and their check of the cash free): use them to set up state."""

    class Meta:
        model = CashHold

    client = None
    portfolio = None
    currency = None
    amount = Decimal("100.0000")
    reference = factory.Sequence(lambda n: f"hold:{n}")

    @classmethod
    def _adjust_kwargs(cls, **kwargs: Any) -> dict[str, Any]:
        kwargs = place(kwargs)
        kwargs["currency"] = kwargs["currency"] or kwargs["client"].base_currency
        return kwargs
