"""Races between trades, cash movements and asset changes (PostgreSQL: SQLite serialises every writer anyway).

Each race is run by an advisor writing for their own client and by a superuser (the `writer` fixture). Where a
race needs every writer to have read its state before the others commit, the portfolio rows are held locked
until they all queue (`rows_locked`).
"""

import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.db import OperationalError

from clients.models import Portfolio
from clients.tests.factories import PortfolioFactory, main_portfolio
from holdings import services
from holdings.models import Allocation, Asset
from holdings.selectors import position
from holdings.tests.factories import AssetFactory, BuyFactory
from ledger import services as ledger_services
from ledger.models import Transaction
from ledger.selectors import cash_available
from ledger.tests.factories import TransactionFactory
from portfolio_site.errors import ConflictError
from portfolio_site.testing import lock_waiters, rows_locked, run_at_once, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

WORKERS = 8
DAY = datetime.date(2026, 7, 1)


def outcome_of(action: Any) -> str:
    """ "done", or how the service refused: a domain refusal, or PostgreSQL breaking a deadlock (which rolls the
    writer's transaction back: a clean failure the caller may retry)."""
    try:
        action()
    except (ConflictError, ValidationError):
        return "refused"
    except OperationalError as error:
        if type(error.__cause__).__name__ == "DeadlockDetected":
            return "deadlock"
        raise
    return "done"


def assert_settlements_agree() -> None:
    """Every trade is settled once, in its own portfolio and in its asset's currency, by a settlement that stands;
    and no settlement that stands has lost its trade."""
    for trade in Allocation.objects.filter(kind__in=Allocation.TRADES).select_related("settlement", "asset"):
        settlement = trade.settlement
        assert settlement.portfolio_id == trade.portfolio_id, f"{trade} is settled in another portfolio"
        assert settlement.currency == trade.asset.currency, f"{trade} is settled in {settlement.currency}"
        assert not Transaction.objects.filter(reverses=settlement).exists(), f"{trade}'s settlement was reversed"
    standing = Transaction.objects.filter(kind__in=Transaction.SETTLEMENTS, reverses__isnull=True, reversal=None)
    # (No reverse relation: ledger knows nothing of holdings.)
    orphans = standing.exclude(pk__in=Allocation.objects.filter(settlement__isnull=False).values("settlement"))
    assert not orphans.exists(), f"settlements of no trade: {list(orphans)}"


def test_buys_racing_withdrawals_never_take_the_cash_below_zero(writer: Any, writers_client: Any) -> None:
    portfolio = main_portfolio(writers_client)
    asset = AssetFactory(currency="EUR")
    TransactionFactory(portfolio=portfolio, amount=Decimal("300"), currency="EUR")
    outcomes: dict[str, list[str]] = {"buy": [], "withdrawal": []}

    def buy() -> None:
        services.allocation_create(
            actor=writer,
            portfolio=portfolio,
            asset=asset,
            kind="buy",
            quantity=Decimal("1"),
            price=Decimal("100"),
            date=DAY,
        )

    def withdraw() -> None:
        ledger_services.transaction_post(
            actor=writer, portfolio_id=portfolio.pk, kind="withdrawal", amount=Decimal("100"), currency="EUR", date=DAY
        )

    def work(n: int) -> None:
        name, action = ("buy", buy) if n % 2 else ("withdrawal", withdraw)
        outcomes[name].append(outcome_of(action))

    with rows_locked(Portfolio, [portfolio.pk], release_when=lambda: lock_waiters() >= WORKERS):
        run_at_once(work, WORKERS)

    done = outcomes["buy"].count("done") + outcomes["withdrawal"].count("done")
    assert done == 3, outcomes  # 300 EUR pays for three of them, whichever they are
    assert set(outcomes["buy"] + outcomes["withdrawal"]) <= {"done", "refused"}
    assert cash_available(portfolio_id=portfolio.pk, currency="EUR") == Decimal("0")
    assert position(portfolio_id=portfolio.pk, asset_id=asset.pk) == outcomes["buy"].count("done")
    assert_settlements_agree()


def test_movements_moved_between_two_portfolios_in_opposite_directions_at_once_all_finish_consistent(
    writer: Any, writers_client: Any
) -> None:
    first, second = main_portfolio(writers_client), PortfolioFactory(client=writers_client)
    asset = AssetFactory(currency="EUR")
    buys = {
        portfolio.pk: [BuyFactory(portfolio=portfolio, asset=asset, quantity=Decimal("1")) for _ in range(WORKERS // 2)]
        for portfolio in (first, second)
    }
    for portfolio in (first, second):  # twice what its buys cost
        TransactionFactory(portfolio=portfolio, amount=Decimal("800"), currency="EUR")
    outcomes: list[str] = []

    def move(n: int) -> None:
        # Half move one of the first portfolio's buys to the second, half one of the second's to the first.
        source, target = (first, second) if n % 2 else (second, first)
        allocation = Allocation.objects.get(pk=buys[source.pk][n // 2].pk)
        outcomes.append(
            outcome_of(lambda: services.allocation_update(actor=writer, allocation=allocation, portfolio=target))
        )

    run_at_once(move, WORKERS, timeout=20)

    assert len(outcomes) == WORKERS  # every one finished: none was left waiting on a lock
    assert set(outcomes) <= {"done", "deadlock"}
    assert outcomes.count("done") == WORKERS, outcomes  # the services lock portfolios in one order: no deadlock
    assert_settlements_agree()
    for portfolio in (first, second):
        held = Allocation.objects.filter(portfolio=portfolio).count()
        assert position(portfolio_id=portfolio.pk, asset_id=asset.pk) == held
        assert cash_available(portfolio_id=portfolio.pk, currency="EUR") == Decimal("800") - 100 * held


def test_one_movement_moved_both_ways_at_once_keeps_one_standing_settlement_in_its_portfolio(
    writer: Any, writers_client: Any
) -> None:
    first, second = main_portfolio(writers_client), PortfolioFactory(client=writers_client)
    for portfolio in (first, second):
        TransactionFactory(portfolio=portfolio, amount=Decimal("500"), currency="EUR")
    buy = BuyFactory(portfolio=first, asset=AssetFactory(currency="EUR"), quantity=Decimal("1"))
    outcomes: list[str] = []

    def move(n: int) -> None:
        target = second if n == 0 else first
        if n == 1:
            # Queue behind the move to the second portfolio, having read the movement while it was in the first.
            assert wait_until(lambda: lock_waiters() >= 1)
        allocation = Allocation.objects.get(pk=buy.pk)
        outcomes.append(
            outcome_of(lambda: services.allocation_update(actor=writer, allocation=allocation, portfolio=target))
        )

    with rows_locked(Portfolio, [first.pk, second.pk], release_when=lambda: lock_waiters() >= 2):
        run_at_once(move, 2)

    assert set(outcomes) <= {"done", "refused"}
    assert_settlements_agree()
    moved = Allocation.objects.get(pk=buy.pk)
    for portfolio in (first, second):
        expected = Decimal("400") if moved.portfolio_id == portfolio.pk else Decimal("500")
        assert cash_available(portfolio_id=portfolio.pk, currency="EUR") == expected


def test_a_buy_racing_its_assets_currency_change_settles_in_the_currency_the_asset_keeps(
    writer: Any, writers_client: Any
) -> None:
    portfolio = main_portfolio(writers_client)
    for currency in ("USD", "EUR"):
        TransactionFactory(portfolio=portfolio, amount=Decimal("1000"), currency=currency)
    asset = AssetFactory(currency="USD")
    outcomes: dict[int, str] = {}

    def work(n: int) -> None:
        if n == 0:  # a buy, its asset read as the API reads it, before the lock
            loaded = Asset.objects.get(pk=asset.pk)
            outcomes[n] = outcome_of(
                lambda: services.allocation_create(
                    actor=writer,
                    portfolio=portfolio,
                    asset=loaded,
                    kind="buy",
                    quantity=Decimal("1"),
                    price=Decimal("100"),
                    date=DAY,
                )
            )
        else:  # the asset's currency corrected while the buy waits
            wait_until(lambda: lock_waiters() >= 1)
            outcomes[n] = outcome_of(
                lambda: services.asset_update(asset=Asset.objects.get(pk=asset.pk), currency="EUR")
            )

    with rows_locked(Portfolio, [portfolio.pk], release_when=lambda: len(outcomes) == 1 and 1 in outcomes):
        run_at_once(work, 2)

    assert set(outcomes.values()) <= {"done", "refused"}
    assert_settlements_agree()
    asset.refresh_from_db()
    if asset.currency == "EUR":  # the change won: the buy, if it went through, paid in euros
        assert not Transaction.objects.filter(kind="buy", currency="USD").exists()
    else:
        assert outcomes[1] == "refused"
