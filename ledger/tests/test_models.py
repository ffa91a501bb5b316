import datetime
from decimal import Decimal

import pytest
from django.db import DataError, IntegrityError, connection, transaction

from clients.tests.factories import ClientFactory, main_portfolio
from ledger.models import Transaction
from ledger.selectors import cash_available, client_balances
from ledger.tests.factories import TransactionFactory

pytestmark = pytest.mark.django_db


def refused_by_database(**fields: object) -> None:
    with pytest.raises(IntegrityError), transaction.atomic():
        TransactionFactory(**fields)


@pytest.mark.parametrize("amount", [Decimal("0"), Decimal("-5")])
def test_database_refuses_a_transaction_amount_that_is_not_positive(amount: Decimal) -> None:
    refused_by_database(amount=amount)


def test_database_refuses_an_unknown_transaction_kind() -> None:
    refused_by_database(kind="gift")


@pytest.mark.parametrize("currency", ["EU", "EURO"])
def test_database_refuses_a_currency_that_is_not_three_letters(currency: str) -> None:
    # PostgreSQL's varchar(3) refuses a fourth letter before the check constraint sees it.
    with pytest.raises((IntegrityError, DataError)), transaction.atomic():
        TransactionFactory(currency=currency)


def test_database_refuses_a_lower_case_currency_written_past_the_orm() -> None:
    tx = TransactionFactory()
    table = Transaction._meta.db_table
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET currency = %s WHERE id = %s", ["eur", tx.pk])


def test_the_orm_stores_a_currency_upper_case() -> None:
    tx = TransactionFactory(currency="usd")
    assert Transaction.objects.filter(pk=tx.pk, currency="USD").exists()


def test_database_refuses_a_second_transaction_with_the_same_reference_for_one_client() -> None:
    first = TransactionFactory(reference="BANK-1")
    refused_by_database(client=first.client, reference="BANK-1")


def test_the_same_reference_may_be_used_by_two_clients_and_many_rows_may_have_none() -> None:
    TransactionFactory(reference="BANK-1")
    TransactionFactory(reference="BANK-1")
    client = ClientFactory()
    TransactionFactory.create_batch(2, client=client, reference=None)
    assert Transaction.objects.count() == 4


def test_database_refuses_a_transaction_that_reverses_itself() -> None:
    tx = TransactionFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        Transaction.objects.filter(pk=tx.pk).update(reverses=tx.pk)


def test_database_refuses_a_second_reversal_of_one_transaction() -> None:
    original = TransactionFactory()
    TransactionFactory(client=original.client, reverses=original)
    refused_by_database(client=original.client, reverses=original)


def test_balances_are_derived_per_currency_from_every_kind_and_reversal() -> None:
    client = ClientFactory()
    day = datetime.date(2026, 3, 1)

    def post(kind: str, amount: str, currency: str = "EUR", reverses: Transaction | None = None) -> Transaction:
        return TransactionFactory(
            client=client, kind=kind, amount=Decimal(amount), currency=currency, date=day, reverses=reverses
        )

    post("deposit", "1000.10")
    withdrawal = post("withdrawal", "200.05")
    post("buy", "300")
    post("sell", "50.0001")
    post("withdrawal", "200.05", reverses=withdrawal)  # undoes the withdrawal: +200.05
    deposit_usd = post("deposit", "70", "USD")
    post("deposit", "70", "USD", reverses=deposit_usd)  # undoes the deposit: -70

    assert client_balances(client_id=client.pk) == {"EUR": Decimal("750.1001"), "USD": Decimal("0.0000")}
    assert cash_available(portfolio_id=main_portfolio(client).pk, currency="EUR") == Decimal("750.1001")
    assert cash_available(portfolio_id=main_portfolio(client).pk, currency="GBP") == Decimal("0")


def test_transaction_str_names_a_reversal() -> None:
    original = TransactionFactory(amount=Decimal("5"), currency="EUR")
    reversal = TransactionFactory(client=original.client, reverses=original, amount=Decimal("5"), currency="EUR")
    assert str(original) == "Deposit 5 EUR"
    assert str(reversal).startswith("Reversal of Deposit")
