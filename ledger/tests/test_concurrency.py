"""Row locks only mean something on PostgreSQL: SQLite serialises every writer anyway."""

import datetime
from decimal import Decimal

import pytest

from accounts.tests.factories import SuperuserFactory
from clients.tests.factories import ClientFactory, PortfolioFactory, main_portfolio
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
                portfolio_id=main_portfolio(client).pk,
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
    assert cash_available(portfolio_id=main_portfolio(client).pk, currency="EUR") == Decimal("0")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_opposite_transfers_between_two_portfolios_at_once_neither_deadlock_nor_overdraw() -> None:

    operations = SuperuserFactory()
    client = ClientFactory()
    first, second = main_portfolio(client), PortfolioFactory(client=client)
    for portfolio in (first, second):
        TransactionFactory(portfolio=portfolio, amount=Decimal("300"), currency="EUR")
    outcomes: list[str] = []

    def transfer(n: int) -> None:
        source, target = (first, second) if n % 2 else (second, first)
        try:
            services.cash_transfer(
                actor=operations,
                from_portfolio_id=source.pk,
                to_portfolio_id=target.pk,
                amount=Decimal("100"),
                currency="EUR",
                date=datetime.date(2026, 7, 1),
            )
            outcomes.append("moved")
        except ConflictError:
            outcomes.append("refused")

    run_at_once(transfer, WORKERS)

    assert len(outcomes) == WORKERS  # every worker finished: no deadlock left one hanging or failed
    balances = [cash_available(portfolio_id=p.pk, currency="EUR") for p in (first, second)]
    assert min(balances) >= 0
    assert sum(balances) == Decimal("600")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_withdrawals_from_two_portfolios_of_one_client_each_use_only_their_own_cash() -> None:

    operations = SuperuserFactory()
    client = ClientFactory()
    rich, poor = main_portfolio(client), PortfolioFactory(client=client)
    TransactionFactory(portfolio=rich, amount=Decimal("800"), currency="EUR")
    TransactionFactory(portfolio=poor, amount=Decimal("200"), currency="EUR")
    outcomes: dict[str, list[str]] = {"rich": [], "poor": []}

    def withdraw(n: int) -> None:
        name, portfolio = ("rich", rich) if n % 2 else ("poor", poor)
        try:
            services.transaction_post(
                actor=operations,
                portfolio_id=portfolio.pk,
                kind="withdrawal",
                amount=Decimal("100"),
                currency="EUR",
                date=datetime.date(2026, 7, 1),
            )
            outcomes[name].append("posted")
        except ConflictError:
            outcomes[name].append("refused")

    run_at_once(withdraw, WORKERS)

    assert outcomes["poor"].count("posted") == 2  # the rich portfolio's cash never funded the poor one
    assert outcomes["rich"].count("posted") == WORKERS // 2
    assert cash_available(portfolio_id=poor.pk, currency="EUR") == Decimal("0")
