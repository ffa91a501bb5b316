"""Every change to a portfolio's history marks it: a new data version (derived figures cached by version miss)
and the earliest day its derived daily figures are stale from, whatever the door."""

import datetime
import io
from decimal import Decimal
from typing import Any

import pytest

from clients.models import Portfolio
from clients.tests.factories import ClientFactory, PortfolioFactory, main_portfolio
from holdings import services as holdings_services
from holdings.tests.factories import AllocationFactory, AssetFactory, PriceFactory
from ledger import services as ledger_services
from ledger.tests.factories import TransactionFactory
from portfolio_site.imports.run import CommandLineActor, run_import

pytestmark = pytest.mark.django_db
D = datetime.date


def marks(portfolio: Portfolio) -> tuple[int, datetime.date | None]:
    portfolio.refresh_from_db()
    return portfolio.data_version, portfolio.history_changed_from


def test_a_back_dated_movement_marks_its_portfolio_stale_from_its_day(operations: Any) -> None:
    portfolio = main_portfolio(ClientFactory())
    version, _ = marks(portfolio)
    ledger_services.transaction_post(
        actor=operations,
        portfolio_id=portfolio.pk,
        kind="deposit",
        amount=Decimal("5"),
        currency="EUR",
        date=D(2026, 5, 1),
    )
    ledger_services.transaction_post(
        actor=operations,
        portfolio_id=portfolio.pk,
        kind="deposit",
        amount=Decimal("5"),
        currency="EUR",
        date=D(2025, 1, 2),
    )
    assert marks(portfolio) == (version + 2, D(2025, 1, 2))  # the earliest day stays


def test_a_reversal_marks_its_portfolio_from_the_original_s_day(operations: Any) -> None:
    deposit = TransactionFactory(date=D(2024, 6, 3))
    ledger_services.transaction_reverse(actor=operations, transaction=deposit)
    assert marks(deposit.portfolio)[1] == D(2024, 6, 3)


def test_a_price_marks_only_the_portfolios_that_hold_its_asset(operations: Any) -> None:
    asset = AssetFactory()
    holder = AllocationFactory(asset=asset).portfolio
    Portfolio.objects.update(history_changed_from=None)  # what the price marks, not what the holding did
    bystander = PortfolioFactory()
    before = marks(bystander)
    holdings_services.price_create(asset=asset, date=D(2026, 2, 2), close=Decimal("10"))
    assert marks(holder)[1] == D(2026, 2, 2)
    assert marks(bystander) == before


def test_moving_a_price_to_another_day_marks_from_the_earlier_of_both(operations: Any) -> None:
    asset = AssetFactory()
    holder = AllocationFactory(asset=asset).portfolio
    Portfolio.objects.update(history_changed_from=None)  # what the price marks, not what the holding did
    price = PriceFactory(asset=asset, date=D(2026, 2, 10))
    holdings_services.price_update(price=price, date=D(2026, 3, 1))
    assert marks(holder)[1] == D(2026, 2, 10)


def test_a_units_transfer_marks_both_portfolios(operations: Any) -> None:
    client = ClientFactory()
    source, target = main_portfolio(client), PortfolioFactory(client=client)
    asset = AssetFactory()
    AllocationFactory(portfolio=source, asset=asset, quantity=Decimal("5"), date=D(2026, 1, 1))
    Portfolio.objects.filter(pk__in=[source.pk, target.pk]).update(history_changed_from=None)
    holdings_services.units_transfer(
        actor=operations,
        from_portfolio=source,
        to_portfolio=target,
        asset=asset,
        quantity=Decimal("1"),
        date=D(2026, 4, 1),
    )
    assert marks(source)[1] == marks(target)[1] == D(2026, 4, 1)


def test_an_import_marks_the_portfolios_it_touched_from_its_first_day() -> None:
    client = ClientFactory(email="ann@example.net")
    portfolio, bystander = main_portfolio(client), main_portfolio(ClientFactory())
    rows = "client,kind,amount,currency,date,reference,notes\nann@example.net,deposit,5,EUR,2026-03-04,,\n"
    rows += "ann@example.net,deposit,5,EUR,2025-07-01,,\n"
    result = run_import(
        kind="transactions", stream=io.BytesIO(rows.encode()), file_name="t.csv", actor=CommandLineActor()
    )
    assert result.ok
    assert marks(portfolio)[1] == D(2025, 7, 1)
    assert marks(bystander)[1] is None


def test_a_prices_import_marks_the_portfolios_holding_its_assets() -> None:
    asset = AssetFactory(ticker="ACME", exchange="XNAS")
    holder = AllocationFactory(asset=asset).portfolio
    bystander = AllocationFactory().portfolio
    Portfolio.objects.update(history_changed_from=None)
    rows = "ticker,exchange,date,close\nACME,XNAS,2026-02-03,10\nACME,XNAS,2026-02-02,9\n"
    result = run_import(kind="prices", stream=io.BytesIO(rows.encode()), file_name="p.csv", actor=CommandLineActor())
    assert result.ok
    assert marks(holder)[1] == D(2026, 2, 2)
    assert marks(bystander)[1] is None


def test_an_allocations_import_marks_its_portfolios_from_its_first_day() -> None:
    client = ClientFactory(email="ann@example.net")
    portfolio = main_portfolio(client)
    AssetFactory(ticker="ACME", exchange="XNAS")
    Portfolio.objects.update(history_changed_from=None)
    rows = "client,ticker,exchange,kind,quantity,price,fees,date,notes\n"
    rows += "ann@example.net,ACME,XNAS,transfer_in,5,1,0,2026-02-05,\n"
    result = run_import(
        kind="allocations", stream=io.BytesIO(rows.encode()), file_name="a.csv", actor=CommandLineActor()
    )
    assert result.ok, result.issues
    assert marks(portfolio)[1] == D(2026, 2, 5)
