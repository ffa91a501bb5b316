"""Cash holds: cash set aside under an opaque reference (an order's, say). From today on a portfolio's cash per
currency stays at or above its holds, in every check that takes cash out, not only in placing holds."""

import datetime
import io
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.urls import reverse
from django.utils import timezone

from clients.models import Portfolio
from clients.tests.factories import ClientFactory, PortfolioFactory, main_portfolio
from ledger import services
from ledger.models import CashHold, Transaction
from ledger.selectors import cash_free, cash_hold_amount, cash_on_hold, cash_shortfall, cash_shortfalls
from ledger.tests.factories import CashHoldFactory, TransactionFactory
from portfolio_site.errors import ConflictError, InsufficientCash
from portfolio_site.imports.run import CommandLineActor, run_import
from portfolio_site.testing import changelist_ids, page_queries, portfolio_client_agreement, refused_by, run_at_once

pytestmark = pytest.mark.django_db
Kind = Transaction.Kind
URL = "/api/v1/transactions/"


def today() -> datetime.date:
    return timezone.localdate()


@pytest.fixture
def funded() -> Portfolio:
    """A client's main portfolio, named Main, with 1,000 EUR deposited long ago."""
    portfolio = main_portfolio(ClientFactory(base_currency="EUR"))
    TransactionFactory(portfolio=portfolio, amount=Decimal("1000"), currency="EUR", date=datetime.date(2026, 1, 15))
    return portfolio


def hold(actor: Any, portfolio: Portfolio, amount: str, reference: str = "order:1", currency: str = "EUR") -> CashHold:
    return services.cash_hold_place(
        actor=actor, portfolio_id=portfolio.pk, currency=currency, amount=Decimal(amount), reference=reference
    )


def withdraw(actor: Any, portfolio: Portfolio, amount: str, date: datetime.date) -> Transaction:
    tx, _ = services.transaction_post(
        actor=actor, portfolio_id=portfolio.pk, kind=Kind.WITHDRAWAL, amount=Decimal(amount), currency="EUR", date=date
    )
    return tx


# --- Placing -------------------------------------------------------------------------------------


def test_placing_a_hold_within_the_free_cash_succeeds(operations: Any, funded: Portfolio) -> None:
    placed = hold(operations, funded, "600")
    assert (placed.client_id, placed.currency, placed.amount) == (funded.client_id, "EUR", Decimal("600"))
    assert cash_on_hold(portfolio_id=funded.pk) == {"EUR": Decimal("600.0000")}
    assert cash_free(portfolio_id=funded.pk, currency="EUR") == Decimal("400.0000")
    assert cash_hold_amount(reference="order:1") == Decimal("600")
    assert hold(operations, funded, "400", reference="order:2").amount == Decimal("400")


def test_placing_a_hold_beyond_the_free_cash_is_refused_naming_what_is_missing(
    operations: Any, funded: Portfolio
) -> None:
    hold(operations, funded, "600")
    with pytest.raises(InsufficientCash) as refusal:
        hold(operations, funded, "1450", reference="order:2")
    error = refusal.value
    assert isinstance(error, ConflictError)
    assert (error.currency, error.needed, error.available, error.missing) == (
        "EUR",
        Decimal("1450"),
        Decimal("400.0000"),
        Decimal("1050.0000"),
    )
    assert error.message == (
        "Insufficient cash in Main: the hold order:2 needs 1050.0000 EUR more than the 400.0000 EUR available "
        "(600.0000 EUR on hold)."
    )
    assert not CashHold.objects.filter(reference="order:2").exists()


def test_a_hold_counts_future_dated_outflows(operations: Any, funded: Portfolio) -> None:
    withdraw(operations, funded, "700", today() + datetime.timedelta(days=5))
    assert cash_free(portfolio_id=funded.pk, currency="EUR") == Decimal("300.0000")
    with pytest.raises(InsufficientCash):
        hold(operations, funded, "301")
    hold(operations, funded, "300")


def test_a_hold_in_a_currency_the_portfolio_does_not_hold_is_refused(operations: Any, funded: Portfolio) -> None:
    with pytest.raises(InsufficientCash) as refusal:
        hold(operations, funded, "1", currency="USD")
    assert (refusal.value.available, refusal.value.missing) == (Decimal("0.0000"), Decimal("1.0000"))


def test_a_reference_already_held_is_refused(operations: Any, funded: Portfolio) -> None:
    hold(operations, funded, "10")
    other = PortfolioFactory(client=funded.client)
    TransactionFactory(portfolio=other, amount=Decimal("50"), currency="EUR")
    with pytest.raises(ConflictError, match="already holds cash"):
        hold(operations, other, "10")


@pytest.mark.parametrize("amount", ["0", "-1"])
def test_a_hold_of_nothing_or_less_is_invalid(operations: Any, funded: Portfolio, amount: str) -> None:
    with pytest.raises(ValidationError):
        hold(operations, funded, amount)


def test_a_hold_in_an_unknown_currency_is_invalid(operations: Any, funded: Portfolio) -> None:
    with pytest.raises(ValidationError):
        hold(operations, funded, "1", currency="XYZ")


def test_an_advisor_cannot_hold_cash_of_a_client_they_do_not_see(advisor: Any, funded: Portfolio) -> None:
    with pytest.raises(PermissionDenied):
        hold(advisor, funded, "1")


def test_a_closed_portfolio_takes_no_new_hold(operations: Any, funded: Portfolio) -> None:
    Portfolio.objects.filter(pk=funded.pk).update(closed_on=today())
    with pytest.raises(ConflictError, match="closed"):
        hold(operations, funded, "1")


# --- Resizing and releasing ----------------------------------------------------------------------


def test_releasing_a_hold_frees_its_cash_and_releasing_again_is_harmless(operations: Any, funded: Portfolio) -> None:
    hold(operations, funded, "1000")
    with pytest.raises(ConflictError):
        withdraw(operations, funded, "1", today())
    assert services.cash_hold_release(actor=operations, reference="order:1") is True
    assert services.cash_hold_release(actor=operations, reference="order:1") is False
    assert cash_hold_amount(reference="order:1") == Decimal("0")
    assert withdraw(operations, funded, "1000", today()).amount == Decimal("1000")


def test_growing_a_hold_is_checked_like_placing_and_shrinking_always_succeeds(
    operations: Any, funded: Portfolio
) -> None:
    hold(operations, funded, "600")
    with pytest.raises(InsufficientCash) as refusal:
        services.cash_hold_resize(actor=operations, reference="order:1", amount=Decimal("1100"))
    assert (refusal.value.needed, refusal.value.available, refusal.value.missing) == (
        Decimal("500.0000"),
        Decimal("400.0000"),
        Decimal("100.0000"),
    )
    assert services.cash_hold_resize(actor=operations, reference="order:1", amount=Decimal("1000")) is not None
    # Shrinking succeeds even when the portfolio is already short (a broker's fill may leave it so).
    services.settlement_post(
        actor=operations,
        portfolio_id=funded.pk,
        kind=Kind.BUY,
        amount=Decimal("500"),
        currency="EUR",
        date=today(),
        overdraft_allowed=True,
    )
    resized = services.cash_hold_resize(actor=operations, reference="order:1", amount=Decimal("700"))
    assert resized is not None
    assert resized.amount == Decimal("700")
    assert cash_hold_amount(reference="order:1") == Decimal("700")


def test_resizing_a_hold_to_zero_releases_it(operations: Any, funded: Portfolio) -> None:
    hold(operations, funded, "600")
    assert services.cash_hold_resize(actor=operations, reference="order:1", amount=Decimal("0")) is None
    assert not CashHold.objects.exists()


def test_resizing_a_reference_that_holds_nothing_is_a_conflict(operations: Any, funded: Portfolio) -> None:
    with pytest.raises(ConflictError, match="No cash is on hold"):
        services.cash_hold_resize(actor=operations, reference="order:404", amount=Decimal("1"))


# --- The rule in every check that takes cash out -------------------------------------------------


def test_a_withdrawal_through_the_api_that_would_eat_into_a_hold_is_refused_with_409(
    operations: Any, api: Any, funded: Portfolio
) -> None:
    hold(operations, funded, "600")
    payload = {
        "client": funded.client_id,
        "kind": "withdrawal",
        "amount": "400.01",
        "currency": "EUR",
        "date": today().isoformat(),
    }
    response = api(operations).post(URL, payload)
    assert response.status_code == 409, response.content
    assert response.json()["detail"] == (
        f"Insufficient cash in Main: the withdrawal of 400.0100 EUR would leave -0.0100 EUR available at the end of "
        f"{today()} (600.0000 EUR on hold)."
    )
    assert api(operations).post(URL, {**payload, "amount": "400"}).status_code == 201


def test_a_back_dated_withdrawal_that_leaves_todays_cash_below_the_holds_is_refused(
    operations: Any, funded: Portfolio
) -> None:
    hold(operations, funded, "600")
    last_month = today() - datetime.timedelta(days=30)
    # Every day before today stays above zero: only today's close, a day without a movement, is short.
    with pytest.raises(ConflictError, match=f"would leave -100.0000 EUR available at the end of {today()}"):
        withdraw(operations, funded, "500", last_month)
    assert withdraw(operations, funded, "400", last_month).amount == Decimal("400")


def test_days_before_today_only_need_cash_above_zero(operations: Any, funded: Portfolio) -> None:
    hold(operations, funded, "600")
    long_ago = datetime.date(2026, 1, 20)
    # Cash back in by today: the hold is covered from today on, and no earlier day closes below zero.
    TransactionFactory(portfolio=funded, amount=Decimal("600"), currency="EUR", date=today() - datetime.timedelta(1))
    assert withdraw(operations, funded, "1000", long_ago).amount == Decimal("1000")
    with pytest.raises(ConflictError, match=f"would leave -0.0100 EUR at the end of {long_ago}"):
        withdraw(operations, funded, "0.01", long_ago)


def test_a_future_dated_withdrawal_eating_into_a_hold_is_refused(operations: Any, funded: Portfolio) -> None:
    hold(operations, funded, "600")
    next_week = today() + datetime.timedelta(days=7)
    with pytest.raises(ConflictError, match=f"-1.0000 EUR available at the end of {next_week}"):
        withdraw(operations, funded, "401", next_week)


def test_a_transfer_out_eating_into_a_hold_is_refused(operations: Any, funded: Portfolio) -> None:
    hold(operations, funded, "600")
    pension = PortfolioFactory(client=funded.client)
    with pytest.raises(ConflictError, match=r"transfer out of 401 EUR would leave -1\.0000 EUR available"):
        services.cash_transfer(
            actor=operations,
            from_portfolio_id=funded.pk,
            to_portfolio_id=pension.pk,
            amount=Decimal("401"),
            currency="EUR",
            date=today(),
        )


def test_reversing_a_deposit_that_funds_a_hold_is_refused(operations: Any, funded: Portfolio) -> None:
    deposit, _ = services.transaction_post(
        actor=operations,
        portfolio_id=funded.pk,
        kind=Kind.DEPOSIT,
        amount=Decimal("500"),
        currency="EUR",
        date=today(),
    )
    hold(operations, funded, "1200")
    with pytest.raises(ConflictError, match="available"):
        services.transaction_reverse(actor=operations, transaction=deposit)


def test_a_hold_in_another_portfolio_or_currency_does_not_count(operations: Any, funded: Portfolio) -> None:
    CashHoldFactory(portfolio=PortfolioFactory(client=funded.client), currency="EUR", amount=Decimal("900"))
    CashHoldFactory(portfolio=funded, currency="USD", amount=Decimal("900"))
    assert withdraw(operations, funded, "1000", today()).amount == Decimal("1000")


def test_a_buy_settlement_with_overdraft_allowed_posts_and_the_shortfall_selector_reports_it(
    operations: Any, funded: Portfolio
) -> None:
    hold(operations, funded, "600")
    with pytest.raises(ConflictError):
        services.settlement_post(
            actor=operations, portfolio_id=funded.pk, kind=Kind.BUY, amount=Decimal("700"), currency="EUR", date=today()
        )
    fill = services.settlement_post(
        actor=operations,
        portfolio_id=funded.pk,
        kind=Kind.BUY,
        amount=Decimal("700"),
        currency="EUR",
        date=today(),
        overdraft_allowed=True,
    )
    assert fill.pk is not None
    shortfall = cash_shortfall(portfolio_id=funded.pk, currency="EUR", since=today())
    assert shortfall is not None
    assert (shortfall.day, shortfall.balance, shortfall.held) == (today(), Decimal("-300.0000"), Decimal("600.0000"))
    services.cash_hold_release(actor=operations, reference="order:1")
    assert cash_shortfall(portfolio_id=funded.pk, currency="EUR", since=today()) is None


def test_the_shortfalls_of_many_portfolios_count_each_ones_holds(operations: Any) -> None:
    portfolios = [main_portfolio(ClientFactory()) for _ in range(3)]
    for portfolio in portfolios:
        TransactionFactory(portfolio=portfolio, amount=Decimal("100"), currency="EUR", date=datetime.date(2026, 1, 2))
    CashHoldFactory(portfolio=portfolios[0], currency="EUR", amount=Decimal("100"))
    CashHoldFactory(portfolio=portfolios[1], currency="EUR", amount=Decimal("150"))
    since = {(portfolio.pk, "EUR"): datetime.date(2026, 1, 1) for portfolio in portfolios}
    found = cash_shortfalls(since=since)
    assert set(found) == {(portfolios[1].pk, "EUR")}
    assert (found[(portfolios[1].pk, "EUR")].day, found[(portfolios[1].pk, "EUR")].balance) == (
        today(),
        Decimal("-50.0000"),
    )


# --- The database's rules ------------------------------------------------------------------------


def test_the_database_refuses_a_hold_of_zero(funded: Portfolio) -> None:
    with refused_by("ledger_cashhold_amount_positive"):
        CashHoldFactory(portfolio=funded, amount=Decimal("0"))


def test_the_database_refuses_a_hold_whose_currency_is_not_a_three_letter_code(funded: Portfolio) -> None:
    with refused_by("ledger_cashhold_currency_iso"):
        CashHoldFactory(portfolio=funded, currency="EU")


def test_the_database_refuses_two_holds_under_one_reference(funded: Portfolio) -> None:
    CashHoldFactory(portfolio=funded, reference="order:7")
    with refused_by("ledger_cashhold.reference"):
        CashHoldFactory(portfolio=funded, reference="order:7")


def test_the_database_refuses_a_hold_whose_client_is_not_its_portfolios(funded: Portfolio) -> None:
    stranger = ClientFactory(main_portfolio=None)
    with refused_by(portfolio_client_agreement(CashHold._meta.db_table)):
        CashHold.objects.create(
            client=stranger, portfolio=funded, currency="EUR", amount=Decimal("1"), reference="order:9"
        )


# --- Imports, the API's balances, concurrency ----------------------------------------------------


def test_a_transaction_import_refuses_a_withdrawal_eating_into_a_hold(operations: Any, funded: Portfolio) -> None:
    hold(operations, funded, "600")
    header = "client,portfolio,custodian,account_number,kind,amount,currency,date,reference,notes\n"
    email = funded.client.email

    def run(amount: str) -> Any:
        text = header + f"{email},Main,,,withdrawal,{amount},EUR,{today()},,\n"
        return run_import(
            kind="transactions", stream=io.BytesIO(text.encode()), file_name="t.csv", actor=CommandLineActor()
        )

    refused = run("500")
    assert [str(issue) for issue in refused.issues] == [
        f"line 2, amount: Insufficient cash in Main: the withdrawal of 500.0000 EUR would leave -100.0000 EUR "
        f"available at the end of {today()} (600.0000 EUR on hold)."
    ]
    assert not Transaction.objects.filter(kind=Kind.WITHDRAWAL).exists()
    assert run("400").ok


def test_balances_show_what_is_on_hold_and_available(operations: Any, api: Any, funded: Portfolio) -> None:
    hold(operations, funded, "600")
    pension = PortfolioFactory(client=funded.client)
    TransactionFactory(portfolio=pension, amount=Decimal("50"), currency="USD")
    CashHoldFactory(portfolio=pension, currency="USD", amount=Decimal("20"))
    c = api(operations)
    assert c.get(f"/api/v1/portfolios/{funded.pk}/balances/").json()["balances"] == [
        {"currency": "EUR", "amount": "1000.0000", "on_hold": "600.0000", "available": "400.0000"}
    ]
    assert c.get(f"/api/v1/clients/{funded.client_id}/balances/").json()["balances"] == [
        {"currency": "EUR", "amount": "1000.0000", "on_hold": "600.0000", "available": "400.0000"},
        {"currency": "USD", "amount": "50.0000", "on_hold": "20.0000", "available": "30.0000"},
    ]
    services.cash_hold_release(actor=operations, reference="order:1")
    assert c.get(f"/api/v1/portfolios/{funded.pk}/balances/").json()["balances"] == [
        {"currency": "EUR", "amount": "1000.0000", "on_hold": "0.0000", "available": "1000.0000"}
    ]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_holds_placed_at_once_that_together_exceed_the_cash_leave_exactly_one(
    writer: Any, writers_client: Any
) -> None:
    portfolio = main_portfolio(writers_client)
    TransactionFactory(portfolio=portfolio, amount=Decimal("1000"), currency="EUR")
    outcomes: list[str] = []

    def place(n: int) -> None:
        try:
            services.cash_hold_place(
                actor=writer, portfolio_id=portfolio.pk, currency="EUR", amount=Decimal("600"), reference=f"order:{n}"
            )
            outcomes.append("held")
        except InsufficientCash:
            outcomes.append("refused")

    run_at_once(place, 2)

    assert sorted(outcomes) == ["held", "refused"]
    assert cash_on_hold(portfolio_id=portfolio.pk) == {"EUR": Decimal("600.0000")}


# --- The admin -------------------------------------------------------------------------------------

CASH_HOLDS = "admin:ledger_cashhold_changelist"


def test_the_cash_hold_changelist_shows_an_advisor_only_their_clients_holds_and_offers_no_changes(
    client: Any, advisor: Any
) -> None:
    own = CashHoldFactory(client=ClientFactory(advisor=advisor))
    CashHoldFactory()
    client.force_login(advisor)
    response = client.get(reverse(CASH_HOLDS))
    assert response.status_code == 200
    assert changelist_ids(response) == {own.pk}
    assert client.get(reverse("admin:ledger_cashhold_add")).status_code == 403
    assert client.get(reverse("admin:ledger_cashhold_change", args=[own.pk])).status_code == 200


def test_the_cash_hold_changelist_queries_do_not_grow_with_its_rows(
    client: Any, advisor: Any, count_queries: Any
) -> None:
    owner = ClientFactory(advisor=advisor)
    client.force_login(advisor)
    url = reverse(CASH_HOLDS)
    CashHoldFactory.create_batch(3, client=owner)
    page_queries(client, count_queries, url)
    few = page_queries(client, count_queries, url)
    CashHoldFactory.create_batch(30, client=owner)
    CashHoldFactory.create_batch(5)
    assert page_queries(client, count_queries, url) == few
