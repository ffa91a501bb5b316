import datetime
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from portfolio_site.money import ExactSum, Shortfall, first_shortfalls, to_amount

from .models import CashHold, Transaction, effective_date, signed_amount


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


def balances_of(*, portfolio_ids: Iterable[int]) -> dict[int, dict[str, Decimal]]:
    """`portfolio_balances` (now) of several portfolios at once, in one query: portfolio id to currency to cash;
    portfolios with no transaction absent."""
    rows = (
        Transaction.objects.filter(portfolio_id__in=list(portfolio_ids))
        .values("portfolio_id", "currency")
        .annotate(balance=ExactSum(signed_amount()))
        .order_by("portfolio_id", "currency")
    )
    found: dict[int, dict[str, Decimal]] = {}
    for row in rows:
        found.setdefault(row["portfolio_id"], {})[row["currency"]] = to_amount(row["balance"])
    return found


def cash_available(*, portfolio_id: int, currency: str, as_of: datetime.date | None = None) -> Decimal:
    """Cash of one currency in one portfolio at the end of `as_of` (now when None)."""
    transactions = _as_of(Transaction.objects.filter(portfolio_id=portfolio_id, currency=currency), as_of)
    total = transactions.aggregate(balance=ExactSum(signed_amount()))["balance"]
    return to_amount(total if total is not None else Decimal("0"))


def cash_shortfalls(
    *, since: dict[tuple[int, str], datetime.date], portfolios: Any = None
) -> dict[tuple[int, str], Shortfall]:
    """For each (portfolio id, currency) the first day from its `since` on at whose end the portfolio's cash in
    that currency is below what it must keep, if any. The rule every door applies: cash never closes a day below
    zero, nor, from today on (future-dated movements counted), below the portfolio's holds in that currency
    (`CashHold`). The shortfall's `balance` is what is then free (the cash less the holds), its `held` the holds.

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
    holds = (
        CashHold.objects.filter(portfolio_id__in=portfolios, currency__in=sorted({c for _, c in since}))
        .values("portfolio_id", "currency")
        .annotate(held=ExactSum("amount"))
    )
    found = first_shortfalls(
        daily,
        keys=("portfolio_id", "currency"),
        key_types=("bigint", "varchar"),
        since=since,
        floors=holds,
        floor_from=timezone.localdate(),
    )
    return {
        key: Shortfall(found_at.day, to_amount(found_at.balance), to_amount(found_at.held))
        for key, found_at in found.items()
    }


def cash_shortfall(*, portfolio_id: int, currency: str, since: datetime.date) -> Shortfall | None:
    """`cash_shortfalls` for one portfolio and currency: what a service checks after writing a movement."""
    return cash_shortfalls(since={(portfolio_id, currency): since}).get((portfolio_id, currency))


def cash_on_hold(*, portfolio_id: int | None = None, client_id: int | None = None) -> dict[str, Decimal]:
    """Cash on hold per currency (the total of the active holds) of one portfolio, or of a client's portfolios
    together; currencies without a hold are absent. One query."""
    holds = CashHold.objects.all()
    if portfolio_id is not None:
        holds = holds.filter(portfolio_id=portfolio_id)
    if client_id is not None:
        holds = holds.filter(client_id=client_id)
    return _balances(holds.values("currency").annotate(balance=ExactSum("amount")).order_by("currency"))


def cash_free(*, portfolio_id: int, currency: str) -> Decimal:
    """Cash of one currency a portfolio can still take out or put on hold: the lowest of its balances at the end of
    today and of every later day a future-dated movement falls on, less its holds in that currency. Negative when
    the portfolio is already short (a broker's fill may leave it so). Two queries."""
    today = timezone.localdate()
    days = (
        Transaction.objects.filter(portfolio_id=portfolio_id, currency=currency)
        .annotate(day=effective_date())
        .values("day")
        .annotate(net=ExactSum(signed_amount()))
        .order_by("day")
    )
    running = Decimal(0)
    closing_today = Decimal(0)  # today closes at the balance of the last movement on or before it
    later: Decimal | None = None  # the lowest close of a later day
    for row in days:
        running += Decimal(row["net"])
        if row["day"] <= today:
            closing_today = running
            continue
        later = running if later is None else min(later, running)
    lowest = closing_today if later is None else min(closing_today, later)
    held = cash_on_hold(portfolio_id=portfolio_id).get(currency, Decimal(0))
    return to_amount(lowest - held)


def cash_hold_amount(*, reference: str) -> Decimal:
    """The cash on hold under `reference` (0 when there is no such hold), in the hold's currency."""
    amount = CashHold.objects.filter(reference=reference).values_list("amount", flat=True).first()
    return amount if amount is not None else Decimal("0")
