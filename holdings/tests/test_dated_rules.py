"""Units by date: a portfolio never holds fewer than zero units at the end of any day, and a trade changed
years later is counted from its (new) trade date only, never twice."""

import datetime
from decimal import Decimal
from typing import Any

import pytest
import time_machine

from clients.models import Portfolio
from clients.tests.factories import ClientFactory, main_portfolio
from holdings import services
from holdings.models import Allocation, Asset
from holdings.selectors import client_positions, portfolio_positions, position
from holdings.tests.factories import AssetFactory
from ledger.selectors import cash_available, portfolio_balances
from ledger.tests.factories import TransactionFactory
from portfolio_site.errors import ConflictError

pytestmark = pytest.mark.django_db


@pytest.fixture
def asset() -> Asset:
    return AssetFactory(currency="EUR")


@pytest.fixture
def portfolio() -> Portfolio:
    portfolio = main_portfolio(ClientFactory(base_currency="EUR"))
    TransactionFactory(portfolio=portfolio, amount=Decimal("10000"), currency="EUR", date=datetime.date(2023, 1, 2))
    return portfolio


def trade(actor: Any, portfolio: Portfolio, asset: Asset, kind: str, quantity: str, on: datetime.date) -> Allocation:
    return services.allocation_create(
        actor=actor,
        portfolio=portfolio,
        asset=asset,
        kind=kind,
        quantity=Decimal(quantity),
        price=Decimal("10"),
        date=on,
    )


def test_a_sell_dated_before_the_buy_it_would_use_is_refused(operations: Any, portfolio, asset) -> None:
    trade(operations, portfolio, asset, "buy", "5", datetime.date(2026, 4, 10))
    with pytest.raises(ConflictError, match="at the end of 2026-04-01"):
        trade(operations, portfolio, asset, "sell", "5", datetime.date(2026, 4, 1))


def test_deleting_a_buy_that_a_later_sell_used_is_refused(operations: Any, portfolio, asset) -> None:
    buy = trade(operations, portfolio, asset, "buy", "5", datetime.date(2026, 4, 1))
    trade(operations, portfolio, asset, "buy", "5", datetime.date(2026, 4, 20))
    trade(operations, portfolio, asset, "sell", "4", datetime.date(2026, 4, 10))
    with pytest.raises(ConflictError, match="at the end of 2026-04-10"):
        services.allocation_delete(actor=operations, allocation=buy)
    assert Allocation.objects.filter(pk=buy.pk).exists()


def test_moving_a_buy_after_the_sell_that_used_it_is_refused(operations: Any, portfolio, asset) -> None:
    buy = trade(operations, portfolio, asset, "buy", "5", datetime.date(2026, 4, 1))
    trade(operations, portfolio, asset, "sell", "5", datetime.date(2026, 4, 10))
    with pytest.raises(ConflictError, match="at the end of 2026-04-10"):
        services.allocation_update(actor=operations, allocation=buy, date=datetime.date(2026, 4, 11))


def test_a_trade_changed_years_later_counts_from_its_trade_date_only_never_twice(
    operations: Any, portfolio, asset
) -> None:
    buy = trade(operations, portfolio, asset, "buy", "10", datetime.date(2023, 3, 1))  # 100 EUR
    with time_machine.travel(datetime.datetime(2026, 5, 4, 9, tzinfo=datetime.UTC)):
        services.allocation_update(actor=operations, allocation=buy, quantity=Decimal("20"))  # now 200 EUR
    for as_of in (datetime.date(2023, 3, 1), datetime.date(2024, 12, 31), datetime.date(2026, 5, 4)):
        assert portfolio_balances(portfolio_id=portfolio.pk, as_of=as_of) == {"EUR": Decimal("9800")}
        assert position(portfolio_id=portfolio.pk, asset_id=asset.pk, as_of=as_of) == Decimal("20")
    assert cash_available(portfolio_id=portfolio.pk, currency="EUR", as_of=datetime.date(2023, 2, 28)) == Decimal(
        "10000"
    )


def test_positions_as_of_a_day_count_the_trades_until_its_end(operations: Any, portfolio, asset) -> None:
    trade(operations, portfolio, asset, "buy", "5", datetime.date(2026, 4, 1))
    trade(operations, portfolio, asset, "sell", "2", datetime.date(2026, 4, 5))
    assert portfolio_positions(portfolio_id=portfolio.pk, as_of=datetime.date(2026, 4, 4)) == {asset.pk: Decimal("5")}
    assert client_positions(client_id=portfolio.client_id, as_of=datetime.date(2026, 4, 5)) == {asset.pk: Decimal("3")}
    assert portfolio_positions(portfolio_id=portfolio.pk, as_of=datetime.date(2026, 3, 31)) == {}
