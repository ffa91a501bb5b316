"""Row locks only mean something on PostgreSQL: SQLite serialises every writer anyway. Each race is run by an
advisor writing for their own client and by a superuser (the `writer` fixture)."""

import datetime
from decimal import Decimal
from typing import Any

import pytest

from clients.models import Portfolio
from clients.tests.factories import PortfolioFactory, main_portfolio
from ledger import services
from ledger.models import Transaction
from ledger.selectors import cash_available
from ledger.tests.factories import TransactionFactory
from portfolio_site.errors import ConflictError
from portfolio_site.testing import lock_waiters, rows_locked, run_at_once

WORKERS = 8


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_withdrawals_never_take_the_balance_below_zero(writer: Any, writers_client: Any) -> None:
    operations, client = writer, writers_client
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
def test_opposite_transfers_between_two_portfolios_at_once_neither_deadlock_nor_overdraw(
    writer: Any, writers_client: Any
) -> None:
    operations, client = writer, writers_client
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
def test_withdrawals_from_two_portfolios_of_one_client_each_use_only_their_own_cash(
    writer: Any, writers_client: Any
) -> None:
    operations, client = writer, writers_client
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


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_one_deposit_reversed_by_many_at_once_is_reversed_exactly_once(writer: Any, writers_client: Any) -> None:
    deposit = TransactionFactory(client=writers_client, amount=Decimal("500"), currency="EUR")
    outcomes: list[str] = []

    def reverse(_: int) -> None:
        # Each request loads the transaction before it queues for the portfolio's lock, as the API does.
        original = Transaction.objects.get(pk=deposit.pk)
        try:
            services.transaction_reverse(actor=writer, transaction=original)
            outcomes.append("reversed")
        except ConflictError:
            outcomes.append("refused")

    with rows_locked(Portfolio, [deposit.portfolio_id], release_when=lambda: lock_waiters() >= WORKERS):
        run_at_once(reverse, WORKERS)

    assert sorted(outcomes) == ["refused"] * (WORKERS - 1) + ["reversed"]
    assert Transaction.objects.filter(reverses=deposit).count() == 1
    assert cash_available(portfolio_id=deposit.portfolio_id, currency="EUR") == Decimal("0")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_both_legs_of_a_transfer_reversed_at_once_reverse_the_transfer_once(writer: Any, writers_client: Any) -> None:
    first, second = main_portfolio(writers_client), PortfolioFactory(client=writers_client)
    TransactionFactory(portfolio=first, amount=Decimal("300"), currency="EUR")
    out, into = services.cash_transfer(
        actor=writer,
        from_portfolio_id=first.pk,
        to_portfolio_id=second.pk,
        amount=Decimal("100"),
        currency="EUR",
        date=datetime.date(2026, 7, 1),
    )
    outcomes: list[str] = []

    def reverse(n: int) -> None:
        leg = Transaction.objects.get(pk=(out if n % 2 else into).pk)  # either leg reverses the whole transfer
        try:
            services.transaction_reverse(actor=writer, transaction=leg)
            outcomes.append("reversed")
        except ConflictError:
            outcomes.append("refused")

    with rows_locked(Portfolio, [first.pk, second.pk], release_when=lambda: lock_waiters() >= WORKERS):
        run_at_once(reverse, WORKERS)

    assert sorted(outcomes) == ["refused"] * (WORKERS - 1) + ["reversed"]
    assert Transaction.objects.filter(reverses__in=[out, into]).count() == 2
    balances = [cash_available(portfolio_id=p.pk, currency="EUR") for p in (first, second)]
    assert balances == [Decimal("300"), Decimal("0")]
