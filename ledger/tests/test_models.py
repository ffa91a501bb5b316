import datetime
from decimal import Decimal

import pytest
from django.db import connection

from accounts.tests.factories import SuperuserFactory
from clients.tests.factories import ClientFactory, main_portfolio
from ledger import services
from ledger.models import Transaction
from ledger.selectors import cash_available, client_balances
from ledger.tests.factories import TransactionFactory
from portfolio_site.testing import VALUE_TOO_LONG, refused_by

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("amount", [Decimal("0"), Decimal("-5")])
def test_database_refuses_a_transaction_amount_that_is_not_positive(amount: Decimal) -> None:
    with refused_by("ledger_transaction_amount_positive"):
        TransactionFactory(amount=amount)


def test_database_refuses_an_unknown_transaction_kind() -> None:
    with refused_by("ledger_transaction_kind_valid"):
        TransactionFactory(kind="gift")


def test_database_refuses_a_currency_of_two_letters() -> None:
    with refused_by("ledger_transaction_currency_iso"):
        TransactionFactory(currency="EU")


def test_database_refuses_a_currency_of_four_letters() -> None:
    # PostgreSQL's varchar(3) refuses a fourth letter before the check constraint sees it; SQLite has no lengths.
    with refused_by(VALUE_TOO_LONG if connection.vendor == "postgresql" else "ledger_transaction_currency_iso"):
        TransactionFactory(currency="EURO")


def test_database_refuses_a_lower_case_currency_written_past_the_orm() -> None:
    tx = TransactionFactory()
    table = Transaction._meta.db_table
    with refused_by("ledger_transaction_currency_iso"), connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET currency = %s WHERE id = %s", ["eur", tx.pk])


def test_the_orm_stores_a_currency_upper_case() -> None:
    tx = TransactionFactory(currency="usd")
    assert Transaction.objects.filter(pk=tx.pk, currency="USD").exists()


def test_database_refuses_a_second_transaction_with_the_same_reference_in_one_portfolio() -> None:
    first = TransactionFactory(reference="BANK-1")
    with refused_by("ledger_transaction_reference_unique_per_portfolio"):
        TransactionFactory(portfolio=first.portfolio, reference="BANK-1")


def test_a_reference_posted_by_two_clients_makes_two_movements_and_postings_without_one_never_collide() -> None:
    # Through the service: a blank reference is stored as NULL, which the unique constraint never compares.
    actor = SuperuserFactory()
    first, second = ClientFactory(), ClientFactory()

    def deposit(client: object, reference: str) -> tuple[Transaction, bool]:
        return services.transaction_post(
            actor=actor,
            portfolio_id=main_portfolio(client).pk,  # type: ignore[arg-type]
            kind="deposit",
            amount=Decimal("10"),
            currency="EUR",
            date=datetime.date(2026, 3, 1),
            reference=reference,
        )

    postings = [deposit(first, "BANK-1"), deposit(second, "BANK-1"), deposit(first, ""), deposit(first, "")]

    assert [created for _, created in postings] == [True, True, True, True]
    assert [tx.reference for tx, _ in postings] == ["BANK-1", "BANK-1", None, None]
    assert cash_available(portfolio_id=main_portfolio(first).pk, currency="EUR") == Decimal("30")


def test_database_refuses_a_transaction_that_reverses_itself() -> None:
    tx = TransactionFactory()
    with refused_by("ledger_transaction_not_self_reversal"):
        Transaction.objects.filter(pk=tx.pk).update(reverses=tx.pk)


def test_database_refuses_a_second_reversal_of_one_transaction() -> None:
    original = TransactionFactory()
    TransactionFactory(client=original.client, reverses=original)
    with refused_by("ledger_transaction.reverses_id"):  # the one-to-one field's own UNIQUE
        TransactionFactory(client=original.client, reverses=original)


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
    assert str(original) == "Deposit 5.00 EUR"  # as people read it
    assert str(reversal).startswith("Reversal of Deposit")


def test_database_refuses_one_import_key_twice_in_a_portfolio_but_not_in_another() -> None:
    first = TransactionFactory(import_key="row-hash-1")
    with refused_by("ledger_transaction_import_key_unique_per_portfolio"):
        TransactionFactory(portfolio=first.portfolio, import_key="row-hash-1")
    assert TransactionFactory(import_key="row-hash-1").portfolio != first.portfolio
