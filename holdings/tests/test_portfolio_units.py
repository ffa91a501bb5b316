"""Units are per portfolio: a sell cannot use another portfolio's units, and a transfer of units between two
portfolios of one client records both legs or neither."""

import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ValidationError

from clients.models import Portfolio
from clients.tests.factories import ClientFactory, PortfolioFactory, main_portfolio
from holdings import services
from holdings.models import Allocation, Asset
from holdings.selectors import client_positions, portfolio_positions, position
from holdings.tests.factories import AllocationFactory, AssetFactory
from ledger.selectors import cash_available
from ledger.tests.factories import TransactionFactory
from portfolio_site.errors import ConflictError
from portfolio_site.testing import portfolio_client_agreement, refused_by

pytestmark = pytest.mark.django_db
DAY = datetime.date(2026, 4, 1)


@pytest.fixture
def asset() -> Asset:
    return AssetFactory(currency="USD")


@pytest.fixture
def accounts(asset: Asset) -> tuple[Portfolio, Portfolio]:
    """One client's brokerage account holding 10 units and 1,000 USD, and its empty pension account."""
    client = ClientFactory()
    brokerage = main_portfolio(client)
    AllocationFactory(portfolio=brokerage, asset=asset, quantity=Decimal("10"))
    TransactionFactory(portfolio=brokerage, amount=Decimal("1000"), currency="USD")
    return brokerage, PortfolioFactory(client=client, name="Pension")


def trade(actor: Any, portfolio: Portfolio, asset: Asset, kind: str, quantity: str) -> Allocation:
    return services.allocation_create(
        actor=actor,
        portfolio=portfolio,
        asset=asset,
        kind=kind,
        quantity=Decimal(quantity),
        price=Decimal("10"),
        date=DAY,
    )


def move(actor: Any, source: Portfolio, target: Portfolio, asset: Asset, quantity: str) -> tuple[Allocation, ...]:
    return services.units_transfer(
        actor=actor, from_portfolio=source, to_portfolio=target, asset=asset, quantity=Decimal(quantity), date=DAY
    )


def test_a_sell_cannot_use_another_portfolios_units(operations: Any, accounts, asset) -> None:
    brokerage, pension = accounts
    TransactionFactory(portfolio=pension, amount=Decimal("1000"), currency="USD")
    with pytest.raises(ConflictError, match="Not enough units"):
        trade(operations, pension, asset, "sell", "1")
    assert trade(operations, brokerage, asset, "sell", "10").portfolio == brokerage


def test_a_buy_settles_in_its_own_portfolios_cash(operations: Any, accounts, asset) -> None:
    brokerage, pension = accounts
    with pytest.raises(ConflictError, match="Insufficient cash in Pension"):
        trade(operations, pension, asset, "buy", "1")
    buy = trade(operations, brokerage, asset, "buy", "1")
    assert (buy.settlement.portfolio, buy.client) == (brokerage, brokerage.client)
    assert cash_available(portfolio_id=brokerage.pk, currency="USD") == Decimal("990")


def test_a_units_transfer_records_both_legs_and_moves_the_units(operations: Any, accounts, asset) -> None:
    brokerage, pension = accounts
    out, into = move(operations, brokerage, pension, asset, "4")
    assert (out.kind, out.portfolio, into.kind, into.portfolio) == ("transfer_out", brokerage, "transfer_in", pension)
    assert into.counterpart == out
    assert (out.settlement, into.settlement) == (None, None)  # no cash changes hands
    assert position(portfolio_id=brokerage.pk, asset_id=asset.pk) == Decimal("6")
    assert portfolio_positions(portfolio_id=pension.pk) == {asset.pk: Decimal("4")}
    assert client_positions(client_id=brokerage.client_id) == {asset.pk: Decimal("10")}


def test_a_units_transfer_larger_than_held_records_neither_leg(operations: Any, accounts, asset) -> None:
    brokerage, pension = accounts
    with pytest.raises(ConflictError, match="Not enough units"):
        move(operations, brokerage, pension, asset, "10.0000000001")
    assert Allocation.objects.count() == 1


def test_units_move_only_between_portfolios_of_one_client(operations: Any, accounts, asset) -> None:
    brokerage, _ = accounts
    with pytest.raises(ValidationError):
        move(operations, brokerage, main_portfolio(ClientFactory()), asset, "1")
    with pytest.raises(ValidationError):
        move(operations, brokerage, brokerage, asset, "1")


def test_deleting_either_leg_of_a_units_transfer_deletes_both(operations: Any, accounts, asset) -> None:
    brokerage, pension = accounts
    out, into = move(operations, brokerage, pension, asset, "4")
    services.allocation_delete(actor=operations, allocation=out)
    assert not Allocation.objects.filter(pk__in=[out.pk, into.pk]).exists()
    assert position(portfolio_id=brokerage.pk, asset_id=asset.pk) == Decimal("10")


def test_a_transfer_whose_units_were_sold_cannot_be_deleted(operations: Any, accounts, asset) -> None:
    brokerage, pension = accounts
    _, into = move(operations, brokerage, pension, asset, "4")
    TransactionFactory(portfolio=pension, amount=Decimal("100"), currency="USD")
    trade(operations, pension, asset, "sell", "4")
    with pytest.raises(ConflictError, match="Not enough units"):
        services.allocation_delete(actor=operations, allocation=into)
    assert Allocation.objects.filter(pk=into.pk).exists()


def test_a_leg_of_a_transfer_is_not_edited_alone(operations: Any, accounts, asset) -> None:
    brokerage, pension = accounts
    out, _ = move(operations, brokerage, pension, asset, "4")
    with pytest.raises(ConflictError, match="leg of a transfer"):
        services.allocation_update(actor=operations, allocation=out, quantity=Decimal("1"))


def test_a_movement_moves_only_to_another_portfolio_of_its_client(operations: Any, accounts, asset) -> None:
    brokerage, pension = accounts
    TransactionFactory(portfolio=pension, amount=Decimal("100"), currency="USD")
    buy = trade(operations, pension, asset, "buy", "1")
    moved = services.allocation_update(actor=operations, allocation=buy, portfolio=brokerage)
    assert (moved.portfolio, moved.settlement.portfolio) == (brokerage, brokerage)
    assert cash_available(portfolio_id=pension.pk, currency="USD") == Decimal("100")
    with pytest.raises(ValidationError):
        services.allocation_update(actor=operations, allocation=moved, portfolio=main_portfolio(ClientFactory()))


def test_the_database_refuses_an_allocation_whose_client_is_not_its_portfolios(accounts, asset) -> None:
    brokerage, pension = accounts
    # A stranger without portfolios: one named "Main" too would refuse a move for the name, not the client.
    stranger = ClientFactory(main_portfolio=None)
    agreement = portfolio_client_agreement(Allocation._meta.db_table)
    with refused_by(agreement):
        Allocation.objects.filter(portfolio=brokerage).update(client=stranger)
    with refused_by(agreement):
        Allocation.objects.create(
            client=stranger, portfolio=brokerage, asset=asset, kind="transfer_in", quantity=1, price=1, date=DAY
        )
    AllocationFactory(portfolio=pension, asset=asset)  # securities only: no ledger row holds the portfolio
    with refused_by(agreement):
        Portfolio.objects.filter(pk=pension.pk).update(client=stranger)  # moving an account with its history
