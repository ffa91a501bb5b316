"""Cash is per portfolio: one portfolio never funds another without an explicit transfer, and a transfer posts
both legs or neither."""

import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection

from clients.models import Portfolio
from clients.services import portfolio_update
from clients.tests.factories import ClientFactory, PortfolioFactory, main_portfolio
from ledger import services
from ledger.models import Transaction
from ledger.selectors import cash_available, client_balances, portfolio_balances
from ledger.tests.factories import TransactionFactory
from portfolio_site.errors import ConflictError
from portfolio_site.testing import portfolio_client_agreement, refused_by

pytestmark = pytest.mark.django_db
DAY = datetime.date(2026, 4, 1)
Kind = Transaction.Kind


@pytest.fixture
def two_portfolios() -> tuple[Portfolio, Portfolio]:
    """One client's taxable account with 1,000 EUR and its empty retirement account."""
    client = ClientFactory()
    taxable = main_portfolio(client)
    TransactionFactory(portfolio=taxable, amount=Decimal("1000"), currency="EUR")
    return taxable, PortfolioFactory(client=client, name="Pension", kind=Portfolio.Kind.RETIREMENT)


def post(actor: Any, portfolio: Portfolio, kind: str, amount: str, **extra: Any) -> Transaction:
    fields = {"currency": "EUR", "date": DAY, **extra}
    tx, _ = services.transaction_post(
        actor=actor, portfolio_id=portfolio.pk, kind=kind, amount=Decimal(amount), **fields
    )
    return tx


def transfer(actor: Any, source: Portfolio, target: Portfolio, amount: str) -> tuple[Transaction, Transaction]:
    return services.cash_transfer(
        actor=actor,
        from_portfolio_id=source.pk,
        to_portfolio_id=target.pk,
        amount=Decimal(amount),
        currency="EUR",
        date=DAY,
    )


def test_a_withdrawal_cannot_use_another_portfolios_cash_of_the_same_client(operations: Any, two_portfolios) -> None:
    taxable, pension = two_portfolios
    with pytest.raises(ConflictError, match="Insufficient cash in Pension"):
        post(operations, pension, "withdrawal", "1")
    assert post(operations, taxable, "withdrawal", "1000").portfolio == taxable


def test_a_deposit_lands_in_its_portfolio_with_the_portfolios_client(operations: Any, two_portfolios) -> None:
    _, pension = two_portfolios
    tx = post(operations, pension, "deposit", "5")
    assert (tx.portfolio, tx.client) == (pension, pension.client)


def test_a_transfer_posts_both_legs_and_moves_the_cash(operations: Any, two_portfolios) -> None:
    taxable, pension = two_portfolios
    out, into = transfer(operations, taxable, pension, "400")
    assert (out.kind, out.portfolio, into.kind, into.portfolio) == (
        Kind.TRANSFER_OUT,
        taxable,
        Kind.TRANSFER_IN,
        pension,
    )
    assert into.counterpart == out
    assert portfolio_balances(portfolio_id=taxable.pk) == {"EUR": Decimal("600")}
    assert portfolio_balances(portfolio_id=pension.pk) == {"EUR": Decimal("400")}
    assert client_balances(client_id=taxable.client_id) == {"EUR": Decimal("1000")}  # the client as a whole


def test_a_transfer_larger_than_the_source_holds_writes_neither_leg(operations: Any, two_portfolios) -> None:
    taxable, pension = two_portfolios
    with pytest.raises(ConflictError, match="Insufficient cash"):
        transfer(operations, taxable, pension, "1000.0001")
    assert not Transaction.objects.filter(kind__in=Transaction.TRANSFERS).exists()


def test_cash_moves_only_between_portfolios_of_one_client(operations: Any, two_portfolios) -> None:
    taxable, _ = two_portfolios
    with pytest.raises(ValidationError):
        transfer(operations, taxable, main_portfolio(ClientFactory()), "1")
    with pytest.raises(ValidationError):
        transfer(operations, taxable, taxable, "1")
    assert not Transaction.objects.filter(kind__in=Transaction.TRANSFERS).exists()


def test_a_transfer_into_a_closed_portfolio_is_refused(operations: Any, two_portfolios) -> None:
    taxable, pension = two_portfolios
    portfolio_update(actor=operations, portfolio=pension, closed_on=DAY)
    with pytest.raises(ConflictError, match="closed"):
        transfer(operations, taxable, pension, "1")
    assert cash_available(portfolio_id=taxable.pk, currency="EUR") == Decimal("1000")


def test_an_advisor_cannot_transfer_from_a_client_they_do_not_advise(advisor: Any, two_portfolios) -> None:
    taxable, pension = two_portfolios
    with pytest.raises(PermissionDenied):
        transfer(advisor, taxable, pension, "1")


def test_reversing_either_leg_of_a_transfer_reverses_both(operations: Any, two_portfolios) -> None:
    taxable, pension = two_portfolios
    out, into = transfer(operations, taxable, pension, "400")
    reversal = services.transaction_reverse(actor=operations, transaction=out)
    assert reversal.reverses == out
    assert Transaction.objects.filter(reverses=into).exists()
    assert portfolio_balances(portfolio_id=taxable.pk) == {"EUR": Decimal("1000")}
    assert portfolio_balances(portfolio_id=pension.pk) == {"EUR": Decimal("0")}


def test_a_transfer_whose_cash_was_spent_cannot_be_reversed(operations: Any, two_portfolios) -> None:
    taxable, pension = two_portfolios
    _, into = transfer(operations, taxable, pension, "400")
    post(operations, pension, "withdrawal", "100")
    with pytest.raises(ConflictError, match="Insufficient cash in Pension"):
        services.transaction_reverse(actor=operations, transaction=into)
    assert not Transaction.objects.filter(reverses__isnull=False).exists()


def test_transfer_legs_cannot_be_posted_directly(operations: Any, two_portfolios) -> None:
    taxable, _ = two_portfolios
    with pytest.raises(ValidationError):
        post(operations, taxable, Kind.TRANSFER_OUT, "1")


def test_a_reference_is_unique_per_portfolio_not_per_client(operations: Any, two_portfolios) -> None:
    taxable, pension = two_portfolios
    post(operations, taxable, "deposit", "1", reference="STMT-1")
    post(operations, pension, "deposit", "1", reference="STMT-1")
    assert Transaction.objects.filter(reference="STMT-1").count() == 2


# --- The database's rules ------------------------------------------------------------------------


def test_the_database_refuses_a_transaction_whose_client_is_not_its_portfolios(two_portfolios) -> None:
    taxable, _ = two_portfolios
    # A stranger without portfolios: one named "Main" too would refuse the move for the name, not the client.
    stranger = ClientFactory(main_portfolio=None)
    agreement = portfolio_client_agreement(Transaction._meta.db_table)
    with refused_by(agreement):
        Transaction.objects.create(
            client=stranger, portfolio=taxable, kind=Kind.DEPOSIT, amount=Decimal("1"), currency="EUR", date=DAY
        )
    tx = Transaction.objects.get(portfolio=taxable)
    with refused_by(agreement):
        Transaction.objects.filter(pk=tx.pk).update(client=stranger)
    with refused_by(agreement):
        Portfolio.objects.filter(pk=taxable.pk).update(client=stranger)  # moving an account with its history


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite holds the pair by triggers, not a key")
def test_the_database_refuses_deleting_a_portfolio_that_has_transactions(two_portfolios) -> None:
    taxable, _ = two_portfolios
    TransactionFactory(portfolio=taxable, kind=Kind.DEPOSIT)
    # Past the ORM's PROTECT: the (portfolio, client) key is the rows' only key to their portfolio in the database.
    with refused_by(portfolio_client_agreement(Transaction._meta.db_table)), connection.cursor() as cursor:
        cursor.execute("DELETE FROM clients_portfolio WHERE id = %s", [taxable.pk])


def test_the_database_refuses_a_transaction_of_a_portfolio_that_does_not_exist(two_portfolios) -> None:
    taxable, _ = two_portfolios
    with refused_by(portfolio_client_agreement(Transaction._meta.db_table)):
        Transaction.objects.create(
            client=taxable.client,
            portfolio_id=taxable.pk + 1000,
            kind=Kind.DEPOSIT,
            amount=Decimal("1"),
            currency="EUR",
            date=DAY,
        )


def test_the_database_refuses_an_incoming_transfer_leg_without_its_outgoing_leg(two_portfolios) -> None:
    _, pension = two_portfolios
    with refused_by("ledger_transaction_transfer_in_has_counterpart"):
        TransactionFactory(portfolio=pension, kind=Kind.TRANSFER_IN)
