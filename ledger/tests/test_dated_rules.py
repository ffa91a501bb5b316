"""Money rules by date: cash is never negative at the end of any day, whatever the order movements are posted
in, and a reversal takes effect at the date of what it reverses."""

import datetime
from decimal import Decimal
from typing import Any

import pytest
import time_machine

from clients.models import Portfolio
from clients.tests.factories import ClientFactory, main_portfolio
from ledger import services
from ledger.models import Transaction
from ledger.selectors import cash_available, cash_shortfall, client_balances, portfolio_balances
from portfolio_site.errors import ConflictError

pytestmark = pytest.mark.django_db


def day(n: int) -> datetime.date:
    return datetime.date(2026, 4, n)


@pytest.fixture
def portfolio() -> Portfolio:
    return main_portfolio(ClientFactory(base_currency="EUR"))


def post(actor: Any, portfolio: Portfolio, kind: str, amount: str, on: datetime.date) -> Transaction:
    tx, _ = services.transaction_post(
        actor=actor, portfolio_id=portfolio.pk, kind=kind, amount=Decimal(amount), currency="EUR", date=on
    )
    return tx


def test_a_withdrawal_dated_before_the_deposit_that_would_fund_it_is_refused(operations: Any, portfolio) -> None:
    post(operations, portfolio, "deposit", "100", day(10))
    with pytest.raises(ConflictError, match=r"would leave -50.0000 EUR at the end of 2026-04-01"):
        post(operations, portfolio, "withdrawal", "50", day(1))
    assert not Transaction.objects.filter(kind="withdrawal").exists()


def test_a_back_dated_withdrawal_that_leaves_a_later_day_negative_is_refused(operations: Any, portfolio) -> None:
    post(operations, portfolio, "deposit", "100", day(1))
    post(operations, portfolio, "withdrawal", "80", day(10))
    with pytest.raises(ConflictError, match=r"would leave -30.0000 EUR at the end of 2026-04-10"):
        post(operations, portfolio, "withdrawal", "50", day(5))


def test_a_withdrawal_after_the_deposit_that_funds_it_is_accepted_whatever_the_posting_order(
    operations: Any, portfolio
) -> None:
    post(operations, portfolio, "deposit", "100", day(10))
    post(operations, portfolio, "withdrawal", "100", day(11))
    assert cash_available(portfolio_id=portfolio.pk, currency="EUR") == Decimal("0")


def test_reversing_a_deposit_that_a_withdrawal_used_is_refused_though_today_s_total_would_allow_it(
    operations: Any, portfolio
) -> None:
    first = post(operations, portfolio, "deposit", "100", day(1))
    post(operations, portfolio, "withdrawal", "100", day(5))
    post(operations, portfolio, "deposit", "100", day(20))
    # The total today is 100, enough to take 100 back; but the reversal counts from 1 April, and 5 April's
    # withdrawal spent that deposit.
    with (
        time_machine.travel(datetime.datetime(2026, 4, 25, 12, tzinfo=datetime.UTC)),
        pytest.raises(ConflictError, match=r"would leave -100\.0000 EUR at the end of 2026-04-05"),
    ):
        services.transaction_reverse(actor=operations, transaction=first)


def test_a_reversal_counts_from_the_date_of_what_it_reverses(operations: Any, portfolio) -> None:
    deposit = post(operations, portfolio, "deposit", "100", day(1))
    with time_machine.travel(datetime.datetime(2026, 6, 30, 12, tzinfo=datetime.UTC)):
        reversal = services.transaction_reverse(actor=operations, transaction=deposit)
    assert reversal.date == datetime.date(2026, 6, 30)  # posted that day, for the audit trail
    for as_of in (day(1), day(30), datetime.date(2026, 6, 30)):
        assert portfolio_balances(portfolio_id=portfolio.pk, as_of=as_of) == {"EUR": Decimal("0")}
    assert portfolio_balances(portfolio_id=portfolio.pk, as_of=datetime.date(2026, 3, 31)) == {}


def test_balances_as_of_a_day_count_every_movement_until_its_end(operations: Any, portfolio) -> None:
    post(operations, portfolio, "deposit", "100", day(1))
    post(operations, portfolio, "withdrawal", "30", day(5))
    assert cash_available(portfolio_id=portfolio.pk, currency="EUR", as_of=day(4)) == Decimal("100")
    assert cash_available(portfolio_id=portfolio.pk, currency="EUR", as_of=day(5)) == Decimal("70")
    assert client_balances(client_id=portfolio.client_id, as_of=day(5)) == {"EUR": Decimal("70")}


def test_the_shortfall_names_the_first_negative_day_from_the_given_day_on(portfolio) -> None:
    from ledger.tests.factories import TransactionFactory

    TransactionFactory(portfolio=portfolio, amount=Decimal("10"), currency="EUR", date=day(1))
    TransactionFactory(portfolio=portfolio, kind="withdrawal", amount=Decimal("15"), currency="EUR", date=day(3))
    TransactionFactory(portfolio=portfolio, amount=Decimal("20"), currency="EUR", date=day(4))
    shortfall = cash_shortfall(portfolio_id=portfolio.pk, currency="EUR", since=day(2))
    assert shortfall is not None
    assert (shortfall.day, shortfall.balance) == (day(3), Decimal("-5"))
    assert cash_shortfall(portfolio_id=portfolio.pk, currency="EUR", since=day(4)) is None


def test_the_balances_endpoints_answer_as_of_a_day(operations: Any, portfolio, api: Any) -> None:
    post(operations, portfolio, "deposit", "100", day(1))
    post(operations, portfolio, "withdrawal", "30", day(5))
    client = api(operations)
    by_portfolio = client.get(f"/api/v1/portfolios/{portfolio.pk}/balances/", {"as_of": "2026-04-04"}).json()
    by_client = client.get(f"/api/v1/clients/{portfolio.client_id}/balances/", {"as_of": "2026-04-05"}).json()
    assert by_portfolio["balances"] == [
        {"currency": "EUR", "amount": "100.0000", "on_hold": "0.0000", "available": "100.0000"}
    ]
    assert by_client["balances"] == [
        {"currency": "EUR", "amount": "70.0000", "on_hold": "0.0000", "available": "70.0000"}
    ]
    refused = client.get(f"/api/v1/portfolios/{portfolio.pk}/balances/", {"as_of": "yesterday"})
    assert refused.status_code == 400
    assert list(refused.json()) == ["as_of"]
