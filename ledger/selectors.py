import datetime
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from django.db.models import QuerySet

from portfolio_site.money import ExactSum, Shortfall, first_shortfalls, to_amount

from .models import Transaction, effective_date, signed_amount


def _as_of(transactions: QuerySet[Transaction], as_of: datetime.date | None) -> QuerySet[Transaction]:
    """The transactions that count in balances at the end of `as_of` (all of them when None)."""
    if as_of is None:
        return transactions
    return transactions.annotate(day=effective_date()).filter(day__lte=as_of)


def _balances(rows: Iterable[Mapping[str, Any]]) -> dict[str, Decimal]:
    return {row["currency"]: to_amount(row["balance"]) for row in rows}


def _by_currency(transactions: QuerySet[Transaction]) -> dict[str, Decimal]:
    return _balances(transactions.values("currency").annotate(balance=ExactSum(signed_amount())).order_by("currency"))


def client_balances(*, client_id: int, as_of: datetime.date | None = None) -> dict[str, Decimal]:
    """Cash per currency of the client as a whole (the sum of its portfolios) at the end of `as_of` (now when
    None), derived from every posted transaction, reversals netted out from their original's date."""
    return _by_currency(_as_of(Transaction.objects.filter(client_id=client_id), as_of))


def portfolio_balances(*, portfolio_id: int, as_of: datetime.date | None = None) -> dict[str, Decimal]:
    """Cash per currency of one portfolio at the end of `as_of` (now when None)."""
    return _by_currency(_as_of(Transaction.objects.filter(portfolio_id=portfolio_id), as_of))


def cash_available(*, portfolio_id: int, currency: str, as_of: datetime.date | None = None) -> Decimal:
    """Cash of one currency in one portfolio at the end of `as_of` (now when None)."""
    transactions = _as_of(Transaction.objects.filter(portfolio_id=portfolio_id, currency=currency), as_of)
    total = transactions.aggregate(balance=ExactSum(signed_amount()))["balance"]
    return to_amount(total if total is not None else Decimal("0"))


def cash_shortfalls(
    *, since: dict[tuple[int, str], datetime.date], portfolios: Any = None
) -> dict[tuple[int, str], Shortfall]:
    """For each (portfolio id, currency) the first day from its `since` on at whose end the portfolio's cash in
    that currency is negative, if any. The rule every door applies: cash never closes a day below zero.

    Set-based whatever the number of portfolios and days (one window query on PostgreSQL). `portfolios`, the ids
    to read (a list or a subquery), defaults to the keys' own.
    """
    if portfolios is None:
        portfolios = sorted({portfolio_id for portfolio_id, _ in since})
    daily = (
        Transaction.objects.filter(portfolio_id__in=portfolios, currency__in=sorted({c for _, c in since}))
        .annotate(day=effective_date())
        .values("portfolio_id", "currency", "day")
        .annotate(net=ExactSum(signed_amount()))
    )
    found = first_shortfalls(daily, keys=("portfolio_id", "currency"), key_types=("bigint", "varchar"), since=since)
    return {key: Shortfall(found_at.day, to_amount(found_at.balance)) for key, found_at in found.items()}


def cash_shortfall(*, portfolio_id: int, currency: str, since: datetime.date) -> Shortfall | None:
    """`cash_shortfalls` for one portfolio and currency: what a service checks after writing a movement."""
    return cash_shortfalls(since={(portfolio_id, currency): since}).get((portfolio_id, currency))
