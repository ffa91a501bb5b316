from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from portfolio_site.money import ExactSum, to_amount

from .models import Transaction, signed_amount


def _balances(rows: Iterable[Mapping[str, Any]]) -> dict[str, Decimal]:
    return {row["currency"]: to_amount(row["balance"]) for row in rows}


def client_balances(*, client_id: int) -> dict[str, Decimal]:
    """Cash per currency of the client as a whole (the sum of its portfolios), derived from every posted
    transaction (reversals included)."""
    rows = (
        Transaction.objects.filter(client_id=client_id)
        .values("currency")
        .annotate(balance=ExactSum(signed_amount()))
        .order_by("currency")
    )
    return _balances(rows)


def portfolio_balances(*, portfolio_id: int) -> dict[str, Decimal]:
    """Cash per currency of one portfolio, derived from its posted transactions (reversals included)."""
    rows = (
        Transaction.objects.filter(portfolio_id=portfolio_id)
        .values("currency")
        .annotate(balance=ExactSum(signed_amount()))
        .order_by("currency")
    )
    return _balances(rows)


def cash_available(*, portfolio_id: int, currency: str) -> Decimal:
    """Cash of one currency in one portfolio: what an outflow from it may take."""
    total = Transaction.objects.filter(portfolio_id=portfolio_id, currency=currency).aggregate(
        balance=ExactSum(signed_amount())
    )["balance"]
    return to_amount(total if total is not None else Decimal("0"))
