"""Row locks only mean something on PostgreSQL: SQLite serialises every writer anyway."""

import datetime
from decimal import Decimal

import pytest

from accounts.tests.factories import SuperuserFactory
from clients.tests.factories import ClientFactory
from ledger import services
from ledger.models import Transaction
from ledger.selectors import cash_available
from ledger.tests.factories import TransactionFactory
from portfolio_site.errors import ConflictError
from portfolio_site.testing import run_at_once

WORKERS = 8


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_withdrawals_never_take_the_balance_below_zero() -> None:
    # A superuser, not an Operations member: a transactional test flushes the roles the migrations made.
    operations = SuperuserFactory()
    client = ClientFactory()
    TransactionFactory(client=client, amount=Decimal("500"), currency="EUR")
    outcomes: list[str] = []

    def withdraw(_: int) -> None:
        try:
            services.transaction_post(
                actor=operations,
                client_id=client.pk,
                kind="withdrawal",
                amount=Decimal("100"),
                currency="EUR",
                date=datetime.date(2026, 7, 1),
            )
            outcomes.append("posted")
        except ConflictError:
            outcomes.append("refused")

    run_at_once(withdraw, WORKERS)

    assert sorted(outcomes) == ["posted"] * 5 + ["refused"] * (WORKERS - 5)
    assert Transaction.objects.filter(kind="withdrawal").count() == 5
    assert cash_available(client_id=client.pk, currency="EUR") == Decimal("0")
