"""An allocations file and the API record the same trades the same way: the import (set-based on PostgreSQL,
replayed through the service on SQLite) leaves every balance and position, day by day, as posting each trade
through the API does."""

import datetime
import io
from decimal import Decimal
from typing import Any

import pytest

from clients.models import Portfolio
from clients.tests.factories import ClientFactory, PortfolioFactory, main_portfolio
from holdings.models import Allocation, Asset
from holdings.selectors import position
from holdings.tests.factories import AssetFactory
from ledger.models import Transaction
from ledger.selectors import cash_available
from ledger.tests.factories import TransactionFactory
from portfolio_site.imports.run import CommandLineActor, run_import

pytestmark = pytest.mark.django_db

EMAIL = "twin@example.org"
HEADER = "client,portfolio,ticker,exchange,kind,quantity,price,fees,date,notes"
# (ticker, kind, quantity, price, fees, date), in file order: not date order, same-day buys and sells, prices
# whose cash rounds half-even to the ledger's four places, fractional units, and transfers without cash.
TRADES = [
    ("SAP", "sell", "15", "230.10", "4.95", "2026-03-05"),
    ("SAP", "buy", "40", "221.35", "9.90", "2026-03-03"),
    ("AAPL", "buy", "7.5", "189.123456789", "1", "2026-03-03"),
    ("SAP", "buy", "3", "33.33335", "0", "2026-03-04"),
    ("AAPL", "sell", "2.25", "190.00005", "0.5", "2026-03-04"),
    ("SAP", "transfer_out", "5", "0", "0", "2026-03-05"),
    ("AAPL", "transfer_in", "1.125", "0", "0", "2026-03-02"),
    ("SAP", "sell", "10", "229.99", "2.5", "2026-03-05"),
    ("AAPL", "buy", "0.0000100001", "1000", "0", "2026-03-06"),
]
DAYS = [datetime.date(2026, 3, day) for day in range(1, 8)]


@pytest.fixture
def twins(operations: Any) -> tuple[Portfolio, Portfolio, list[Asset]]:
    client = ClientFactory(email=EMAIL, base_currency="EUR", advisor=operations)
    imported, posted = main_portfolio(client), PortfolioFactory(client=client, name="Mirror")
    for portfolio in (imported, posted):
        TransactionFactory(portfolio=portfolio, amount=Decimal("20000"), currency="EUR", date=datetime.date(2026, 3, 1))
        TransactionFactory(portfolio=portfolio, amount=Decimal("5000"), currency="USD", date=datetime.date(2026, 3, 1))
    assets = [
        AssetFactory(ticker="SAP", exchange="XETR", currency="EUR"),
        AssetFactory(ticker="AAPL", exchange="XNAS", currency="USD"),
    ]
    return imported, posted, assets


def test_an_imported_portfolio_and_one_posted_through_the_api_hold_the_same_cash_and_units_every_day(
    twins: tuple[Portfolio, Portfolio, list[Asset]], operations: Any, api: Any
) -> None:
    imported, posted, assets = twins
    exchanges = {asset.ticker: asset for asset in assets}
    rows = [
        f"{EMAIL},{imported.name},{ticker},{exchanges[ticker].exchange},{kind},{quantity},{price},{fees},{day},"
        for ticker, kind, quantity, price, fees, day in TRADES
    ]
    result = run_import(
        kind="allocations",
        stream=io.BytesIO("\n".join([HEADER, *rows, ""]).encode()),
        file_name="trades.csv",
        actor=CommandLineActor(),
    )
    assert result.ok, [str(issue) for issue in result.issues]
    # The API takes each trade as it comes, so it is given them in the order the import applies them.
    for _, (ticker, kind, quantity, price, fees, day) in sorted(enumerate(TRADES), key=lambda row: (row[1][5], row[0])):
        body = {"portfolio": posted.pk, "asset": exchanges[ticker].pk, "kind": kind, "quantity": quantity}
        response = api(operations).post(
            "/api/v1/allocations/", {**body, "price": price, "fees": fees, "date": day}, format="json"
        )
        assert response.status_code == 201, response.content

    for day in [*DAYS, None]:
        for currency in ("EUR", "USD"):
            assert cash_available(portfolio_id=imported.pk, currency=currency, as_of=day) == cash_available(
                portfolio_id=posted.pk, currency=currency, as_of=day
            ), (currency, day)
        for asset in assets:
            assert position(portfolio_id=imported.pk, asset_id=asset.pk, as_of=day) == position(
                portfolio_id=posted.pk, asset_id=asset.pk, as_of=day
            ), (asset, day)
    assert _settlements(imported) == _settlements(posted)


def _settlements(portfolio: Portfolio) -> list[tuple[Any, ...]]:
    """Each trade with its settlement as a reader of the ledger sees it. Not the notes: they write the quantity as
    the door was given it ("3" from a file, "3.0000000000" from the API), which says nothing of the money."""
    trades = Allocation.objects.filter(portfolio=portfolio, settlement__isnull=False).select_related("settlement")
    rows: list[tuple[Any, ...]] = sorted(
        (
            allocation.kind,
            allocation.quantity,
            allocation.date,
            allocation.settlement.kind,
            allocation.settlement.amount,
            allocation.settlement.currency,
            allocation.settlement.date,
        )
        for allocation in trades
    )
    return [*rows, (Transaction.objects.filter(portfolio=portfolio).count(),)]
