import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection

from clients.tests.factories import ClientFactory, main_portfolio
from ledger import services
from ledger.models import Transaction
from ledger.selectors import cash_available, client_balances
from ledger.tests.factories import TransactionFactory
from portfolio_site.errors import ConflictError

pytestmark = pytest.mark.django_db
DAY = datetime.date(2026, 4, 1)


def post(actor: Any, client: Any, kind: str, amount: str, **extra: Any) -> tuple[Transaction, bool]:
    fields = {"currency": "EUR", "date": DAY, **extra}
    return services.transaction_post(
        actor=actor, portfolio_id=main_portfolio(client).pk, kind=kind, amount=Decimal(amount), **fields
    )


def test_deposit_is_posted_with_its_author(operations: Any) -> None:
    client = ClientFactory()
    tx, created = post(operations, client, "deposit", "100")
    assert created
    assert (tx.kind, tx.amount, tx.created_by) == ("deposit", Decimal("100"), operations)


def test_withdrawal_larger_than_balance_is_refused_and_writes_nothing(operations: Any) -> None:
    client = ClientFactory()
    post(operations, client, "deposit", "100")
    with pytest.raises(ConflictError, match="Insufficient cash"):
        post(operations, client, "withdrawal", "100.0001")
    assert Transaction.objects.filter(kind="withdrawal").count() == 0


def test_withdrawal_is_checked_against_the_balance_in_its_own_currency(operations: Any) -> None:
    client = ClientFactory()
    post(operations, client, "deposit", "100", currency="USD")
    with pytest.raises(ConflictError):
        post(operations, client, "withdrawal", "50", currency="EUR")


def test_withdrawal_of_the_whole_balance_leaves_zero(operations: Any) -> None:
    client = ClientFactory()
    post(operations, client, "deposit", "100")
    post(operations, client, "withdrawal", "100")
    assert cash_available(portfolio_id=main_portfolio(client).pk, currency="EUR") == Decimal("0")


def test_posting_a_reference_again_returns_the_first_posting(operations: Any) -> None:
    client = ClientFactory()
    first, created_first = post(operations, client, "deposit", "100", reference="BANK-7")
    again, created_again = post(operations, client, "deposit", "100", reference="BANK-7")
    assert (created_first, created_again) == (True, False)
    assert again.pk == first.pk
    assert Transaction.objects.count() == 1


def test_reusing_a_reference_for_a_different_movement_is_a_conflict(operations: Any) -> None:
    client = ClientFactory()
    post(operations, client, "deposit", "100", reference="BANK-7")
    with pytest.raises(ConflictError, match="BANK-7"):
        post(operations, client, "deposit", "999", reference="BANK-7")


def test_buys_and_sells_are_not_posted_as_cash_movements(operations: Any) -> None:
    with pytest.raises(ValidationError):
        post(operations, ClientFactory(), "buy", "10")


def test_unknown_currency_is_refused(operations: Any) -> None:
    with pytest.raises(ValidationError, match="ISO 4217"):
        post(operations, ClientFactory(), "deposit", "10", currency="XYZ")


def test_advisor_cannot_post_for_a_client_they_do_not_advise(advisor: Any) -> None:
    with pytest.raises(PermissionDenied):
        post(advisor, ClientFactory(), "deposit", "10")


def test_advisor_posts_for_their_own_client(advisor: Any) -> None:
    tx, _ = post(advisor, ClientFactory(advisor=advisor), "deposit", "10")
    assert tx.client.advisor == advisor


def test_auditor_sees_all_clients_but_the_api_refuses_writes_by_permission(auditor: Any) -> None:
    # Visibility lets an auditor see every client; it is the missing add permission that stops writes.
    assert not auditor.has_perm("ledger.add_transaction")
    assert auditor.has_perm("ledger.view_transaction")


def test_reversing_a_deposit_posts_a_reversal_and_leaves_the_original_untouched(operations: Any) -> None:
    client = ClientFactory()
    deposit, _ = post(operations, client, "deposit", "100")
    reversal = services.transaction_reverse(actor=operations, transaction=deposit, notes="Keyed twice")
    deposit.refresh_from_db()
    assert (reversal.reverses, reversal.kind, reversal.amount, reversal.notes) == (
        deposit,
        "deposit",
        deposit.amount,
        "Keyed twice",
    )
    assert deposit.amount == Decimal("100")
    assert cash_available(portfolio_id=main_portfolio(client).pk, currency="EUR") == Decimal("0")


def test_reversing_a_deposit_that_was_already_spent_is_refused(operations: Any) -> None:
    client = ClientFactory()
    deposit, _ = post(operations, client, "deposit", "100")
    post(operations, client, "withdrawal", "60")
    with pytest.raises(ConflictError, match="Insufficient cash"):
        services.transaction_reverse(actor=operations, transaction=deposit)


def test_reversing_a_withdrawal_gives_the_cash_back(operations: Any) -> None:
    client = ClientFactory()
    post(operations, client, "deposit", "100")
    withdrawal, _ = post(operations, client, "withdrawal", "40")
    services.transaction_reverse(actor=operations, transaction=withdrawal)
    assert cash_available(portfolio_id=main_portfolio(client).pk, currency="EUR") == Decimal("100")


def test_a_transaction_is_reversed_at_most_once(operations: Any) -> None:
    deposit, _ = post(operations, ClientFactory(), "deposit", "100")
    services.transaction_reverse(actor=operations, transaction=deposit)
    with pytest.raises(ConflictError, match="already been reversed"):
        services.transaction_reverse(actor=operations, transaction=deposit)


def test_a_reversal_cannot_be_reversed(operations: Any) -> None:
    deposit, _ = post(operations, ClientFactory(), "deposit", "100")
    reversal = services.transaction_reverse(actor=operations, transaction=deposit)
    with pytest.raises(ConflictError, match="cannot itself be reversed"):
        services.transaction_reverse(actor=operations, transaction=reversal)


def test_a_trade_settlement_is_not_reversed_directly(operations: Any) -> None:
    settlement = TransactionFactory(kind="buy")
    with pytest.raises(ConflictError, match="settles a trade"):
        services.transaction_reverse(actor=operations, transaction=settlement)


def test_settlement_reverse_refuses_a_cash_movement(operations: Any) -> None:
    with pytest.raises(ValidationError):
        services.settlement_reverse(actor=operations, transaction=TransactionFactory(kind="deposit"))


def test_a_buy_settlement_is_refused_when_cash_is_short(operations: Any) -> None:
    client = ClientFactory()
    post(operations, client, "deposit", "10")
    with pytest.raises(ConflictError):
        services.settlement_post(
            actor=operations,
            portfolio_id=main_portfolio(client).pk,
            kind="buy",
            amount=Decimal("10.01"),
            currency="EUR",
            date=DAY,
        )
    tx = services.settlement_post(
        actor=operations,
        portfolio_id=main_portfolio(client).pk,
        kind="sell",
        amount=Decimal("5"),
        currency="EUR",
        date=DAY,
    )
    assert cash_available(portfolio_id=main_portfolio(client).pk, currency="EUR") == Decimal("15")
    with pytest.raises(ValidationError):
        services.settlement_post(
            actor=operations,
            portfolio_id=main_portfolio(client).pk,
            kind="deposit",
            amount=Decimal("5"),
            currency="EUR",
            date=DAY,
        )
    assert tx.kind == "sell"


# --- Exact money on SQLite ------------------------------------------------------------------------------

on_sqlite = pytest.mark.skipif(connection.vendor != "sqlite", reason="only SQLite rounds past 15 significant digits")


@on_sqlite
def test_posting_an_amount_sqlite_would_round_is_refused_by_full_clean(operations: Any) -> None:
    with pytest.raises(ValidationError) as error:
        post(operations, ClientFactory(), "deposit", "123456789012.3456")
    assert "amount" in error.value.message_dict
    assert not Transaction.objects.exists()


def test_a_thousand_tenths_add_up_to_exactly_one_hundred() -> None:
    client = ClientFactory(base_currency="EUR")
    TransactionFactory.create_batch(1000, client=client, amount=Decimal("0.1"), currency="EUR")
    TransactionFactory(client=client, kind="withdrawal", amount=Decimal("0.3"), currency="EUR")
    assert cash_available(portfolio_id=main_portfolio(client).pk, currency="EUR") == Decimal("99.7000")
    assert client_balances(client_id=client.pk) == {"EUR": Decimal("99.7000")}


def test_large_amounts_with_four_decimals_add_up_exactly() -> None:
    # Each has 15 significant digits (storable); their total has 16, which a float sum rounds.
    client = ClientFactory(base_currency="EUR")
    TransactionFactory.create_batch(10, client=client, amount=Decimal("99999999999.9999"), currency="EUR")
    TransactionFactory(client=client, amount=Decimal("0.0003"), currency="EUR")
    TransactionFactory(client=client, kind="withdrawal", amount=Decimal("0.0001"), currency="EUR")
    assert cash_available(portfolio_id=main_portfolio(client).pk, currency="EUR") == Decimal("999999999999.9992")
    assert client_balances(client_id=client.pk) == {"EUR": Decimal("999999999999.9992")}


# --- Income and costs: interest, fees, taxes, tax refunds ----------------------------------------------------------


def test_interest_and_tax_refunds_bring_cash_in_and_fees_and_taxes_take_it_out(operations: Any) -> None:
    client = ClientFactory()
    post(operations, client, "deposit", "100")
    post(operations, client, "interest", "1.25")
    post(operations, client, "tax_refund", "0.75")
    post(operations, client, "fee", "10")
    post(operations, client, "tax", "2")
    assert cash_available(portfolio_id=main_portfolio(client).pk, currency="EUR") == Decimal("90.0000")


@pytest.mark.parametrize("kind", ["fee", "tax"])
def test_a_fee_or_tax_larger_than_the_cash_is_refused_like_a_withdrawal(operations: Any, kind: str) -> None:
    client = ClientFactory()
    post(operations, client, "deposit", "5")
    with pytest.raises(ConflictError, match=f"the {kind} of 5.0001 EUR would leave -0.0001 EUR"):
        post(operations, client, kind, "5.0001")
    assert not Transaction.objects.filter(kind=kind).exists()


def test_a_fee_on_an_earlier_day_may_not_overdraw_that_day(operations: Any) -> None:
    client = ClientFactory()
    post(operations, client, "deposit", "50", date=DAY)
    with pytest.raises(ConflictError, match="Insufficient cash"):
        post(operations, client, "fee", "1", date=DAY - datetime.timedelta(days=1))


def test_a_dividend_cannot_be_posted_directly(operations: Any) -> None:
    client = ClientFactory()
    with pytest.raises(ValidationError) as refused:
        post(operations, client, "dividend", "10")
    assert "dividends are recorded as dividends" in str(refused.value.message_dict["kind"])
    assert not Transaction.objects.exists()


def test_interest_posted_twice_with_one_reference_is_posted_once(operations: Any) -> None:
    client = ClientFactory()
    first, _ = post(operations, client, "interest", "3", reference="INT-2026-04")
    again, created = post(operations, client, "interest", "3", reference="INT-2026-04")
    assert (again.pk, created) == (first.pk, False)
    with pytest.raises(ConflictError, match="different details"):
        post(operations, client, "fee", "3", reference="INT-2026-04")


def test_reversing_a_fee_gives_the_cash_back_and_reversing_spent_interest_is_refused(operations: Any) -> None:
    client = ClientFactory()
    post(operations, client, "deposit", "10")
    fee, _ = post(operations, client, "fee", "4")
    services.transaction_reverse(actor=operations, transaction=fee)
    assert cash_available(portfolio_id=main_portfolio(client).pk, currency="EUR") == Decimal("10.0000")
    interest, _ = post(operations, client, "interest", "5", date=DAY + datetime.timedelta(days=1))
    post(operations, client, "withdrawal", "15", date=DAY + datetime.timedelta(days=2))
    with pytest.raises(ConflictError, match="Insufficient cash"):
        services.transaction_reverse(actor=operations, transaction=interest)


def test_a_dividend_s_cash_is_reversed_only_through_its_dividend(operations: Any) -> None:
    client = ClientFactory()
    cash = services.dividend_cash_post(
        actor=operations, portfolio_id=main_portfolio(client).pk, amount=Decimal("8"), currency="EUR", date=DAY
    )
    with pytest.raises(ConflictError, match="change or delete the dividend"):
        services.transaction_reverse(actor=operations, transaction=cash)
    deposit, _ = post(operations, client, "deposit", "1")
    with pytest.raises(ValidationError):
        services.dividend_cash_reverse(actor=operations, transaction=deposit)
    services.dividend_cash_reverse(actor=operations, transaction=cash)
    assert cash_available(portfolio_id=main_portfolio(client).pk, currency="EUR") == Decimal("1.0000")
