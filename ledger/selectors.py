from decimal import Decimal

from portfolio_site.money import ExactSum, to_amount

from .models import Transaction, signed_amount


def client_balances(*, client_id: int) -> dict[str, Decimal]:
    """Cash per currency, derived from every posted transaction of the client (reversals included)."""
    rows = (
        Transaction.objects.filter(client_id=client_id)
        .values("currency")
        .annotate(balance=ExactSum(signed_amount()))
        .order_by("currency")
    )
    return {row["currency"]: to_amount(row["balance"]) for row in rows}


def cash_available(*, client_id: int, currency: str) -> Decimal:
    total = Transaction.objects.filter(client_id=client_id, currency=currency).aggregate(
        balance=ExactSum(signed_amount())
    )["balance"]
    return to_amount(total if total is not None else Decimal("0"))
