"""The realized-gains report: a worked example across a split, both cost methods, the door's parameters,
visibility, query counts and cache.

Worked example (USD client, USD asset, no fees):
    2025-01-06 buy 60 at 100 (6,000); 2026-01-06 buy 40 at 125 (5,000); 2026-01-10 split 2 for 1: lots 120 @ 50
    (bought 2025-01-06) and 80 @ 62.50 (bought 2026-01-06). 2026-03-02 sell 150 at 70: proceeds 10,500.
    FIFO: 120 from the first lot, cost 6,000, proceeds 8,400, gain 2,400, held 420 days: long term; 30 from the
    second, cost 1,875, proceeds 2,100, gain 225, held 55 days: short term. Cost 7,875, gain 2,625.
    Average: cost 11,000 / 200 x 150 = 8,250, gain 2,250, held from 2025-01-06 (the pool opened): 420 days, long.
    A 2025 sale of 10 at 110 (before the split; FIFO cost 1,000, gain 100) belongs to tax year 2025 only.
"""

import datetime
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.core.cache import cache

from clients.tests.factories import ClientFactory, main_portfolio
from holdings import services
from holdings.realized import LONG, SHORT, realized_gains, term
from holdings.tests.factories import AssetFactory, BuyFactory, SellFactory
from ledger.tests.factories import TransactionFactory

pytestmark = pytest.mark.django_db
D = datetime.date


@pytest.fixture
def book(advisor: Any, operations: Any) -> dict[str, Any]:
    client = ClientFactory(advisor=advisor, base_currency="USD")
    portfolio = main_portfolio(client)
    portfolio.base_currency = "USD"
    portfolio.save()
    asset = AssetFactory(ticker="GAIN", currency="USD")
    TransactionFactory(portfolio=portfolio, currency="USD", amount=Decimal(20000), date=D(2025, 1, 2))
    BuyFactory(portfolio=portfolio, asset=asset, quantity=Decimal(60), price=Decimal(100), date=D(2025, 1, 6))
    BuyFactory(portfolio=portfolio, asset=asset, quantity=Decimal(40), price=Decimal(125), date=D(2026, 1, 6))
    services.split_create(actor=operations, asset=asset, date=D(2026, 1, 10), new_units=2, old_units=1)
    SellFactory(portfolio=portfolio, asset=asset, quantity=Decimal(150), price=Decimal(70), date=D(2026, 3, 2))
    return {"client": client, "portfolio": portfolio, "asset": asset}


def test_fifo_realized_gains_split_a_sale_over_its_lots_with_their_holding_periods(book: dict[str, Any]) -> None:
    report = realized_gains(portfolio_ids=[book["portfolio"].pk], currency="USD", year=2026, cost_method="fifo")
    (sale,) = report.sales
    assert (sale.date, sale.units, sale.proceeds, sale.cost, sale.gain) == (D(2026, 3, 2), 150, 10500, 7875, 2625)
    assert [
        (lot.acquired, lot.units, lot.cost, lot.proceeds, lot.gain, lot.days_held, lot.term) for lot in sale.lots
    ] == [
        (D(2025, 1, 6), 120, 6000, 8400, 2400, 420, LONG),
        (D(2026, 1, 6), 30, 1875, 2100, 225, 55, SHORT),
    ]
    assert (report.totals.proceeds, report.totals.cost, report.totals.gain) == (10500, 7875, 2625)
    assert (report.totals.long_term_gain, report.totals.short_term_gain) == (2400, 225)
    (usd,) = report.by_currency
    assert (usd.currency, usd.gain) == ("USD", 2625)


def test_average_cost_realized_gains_hold_the_pool_from_the_day_it_opened(book: dict[str, Any]) -> None:
    report = realized_gains(portfolio_ids=[book["portfolio"].pk], currency="USD", year=2026, cost_method="average")
    (sale,) = report.sales
    assert (sale.cost, sale.gain) == (8250, 2250)
    ((acquired, days, held_term),) = [(lot.acquired, lot.days_held, lot.term) for lot in sale.lots]
    assert (acquired, days, held_term) == (D(2025, 1, 6), 420, LONG)


def test_a_sale_belongs_to_the_tax_year_of_its_trade_date(book: dict[str, Any]) -> None:
    SellFactory(
        portfolio=book["portfolio"], asset=book["asset"], quantity=Decimal(10), price=Decimal(110), date=D(2025, 6, 1)
    )
    in_2025 = realized_gains(portfolio_ids=[book["portfolio"].pk], currency="USD", year=2025, cost_method="fifo")
    assert [(s.date, s.gain) for s in in_2025.sales] == [(D(2025, 6, 1), 100)]
    in_2026 = realized_gains(portfolio_ids=[book["portfolio"].pk], currency="USD", year=2026, cost_method="fifo")
    assert [s.date for s in in_2026.sales] == [D(2026, 3, 2)]


@pytest.mark.parametrize(
    ("acquired", "sold", "expected"),
    [
        (D(2025, 3, 1), D(2026, 3, 1), SHORT),  # exactly one year: not more than one
        (D(2025, 3, 1), D(2026, 3, 2), LONG),
        (D(2024, 2, 29), D(2025, 3, 1), SHORT),
        (D(2024, 2, 29), D(2025, 3, 2), LONG),
    ],
)
def test_long_term_means_sold_after_the_first_anniversary(acquired: Any, sold: Any, expected: str) -> None:
    assert term(acquired, sold) == expected


def test_the_realized_gains_endpoint_rounds_and_lists_lots(book: dict[str, Any], advisor: Any, api: Any) -> None:
    url = f"/api/v1/portfolios/{book['portfolio'].pk}/realized-gains/?year=2026&cost_method=fifo"
    body = api(advisor).get(url).json()
    (sale,) = body["sales"]
    assert (sale["proceeds"], sale["cost"], sale["gain"], sale["gain_base"]) == (
        "10500.00",
        "7875.00",
        "2625.00",
        "2625.00",
    )
    assert [(lot["term"], lot["days_held"], lot["units"]) for lot in sale["lots"]] == [
        ("long", 420, "120.0000000000"),
        ("short", 55, "30.0000000000"),
    ]
    assert body["totals"] == {
        "currency": "USD",
        "proceeds": "10500.00",
        "cost": "7875.00",
        "gain": "2625.00",
        "short_term_gain": "225.00",
        "long_term_gain": "2400.00",
    }
    assert (body["portfolio"], body["client"], body["year"], body["cost_method"]) == (
        book["portfolio"].pk,
        book["client"].pk,
        2026,
        "fifo",
    )
    client_body = api(advisor).get(f"/api/v1/clients/{book['client'].pk}/realized-gains/?year=2026").json()
    assert (client_body["totals"]["gain"], client_body["cost_method"]) == ("2250.00", "average")


@pytest.mark.parametrize(
    ("query", "field"),
    [("", "year"), ("year=20x6", "year"), ("year=0", "year"), ("year=2026&cost_method=lifo", "cost_method")],
)
def test_a_bad_year_or_cost_method_is_refused_with_400_naming_it(
    book: dict[str, Any], advisor: Any, api: Any, query: str, field: str
) -> None:
    response = api(advisor).get(f"/api/v1/portfolios/{book['portfolio'].pk}/realized-gains/?{query}")
    assert response.status_code == 400
    assert field in response.json()


def test_another_advisors_portfolio_is_not_found(book: dict[str, Any], other_advisor: Any, api: Any) -> None:
    for url in (
        f"/api/v1/portfolios/{book['portfolio'].pk}/realized-gains/?year=2026",
        f"/api/v1/clients/{book['client'].pk}/realized-gains/?year=2026",
    ):
        assert api(other_advisor).get(url).status_code == 404


@pytest.mark.parametrize("kind", ["portfolio", "client"])
def test_realized_gains_queries_do_not_grow_with_the_number_of_sales(
    book: dict[str, Any], advisor: Any, api: Any, count_queries: Callable[[Callable[[], Any]], int], kind: str
) -> None:
    target = book["client"].pk if kind == "client" else book["portfolio"].pk
    url = f"/api/v1/{kind}s/{target}/realized-gains/?year=2026&cost_method=fifo"

    def add(sales: int) -> None:
        for n in range(sales):
            asset = AssetFactory(currency="EUR" if n % 2 else "USD")
            BuyFactory(
                portfolio=book["portfolio"], asset=asset, quantity=Decimal(2), price=Decimal(5), date=D(2026, 1, 2)
            )
            SellFactory(
                portfolio=book["portfolio"], asset=asset, quantity=Decimal(1), price=Decimal(6), date=D(2026, 2, 2)
            )

    def measure() -> int:
        cache.clear()
        user = type(advisor).objects.get(pk=advisor.pk)
        return count_queries(lambda: api(user).get(url))

    add(2)
    few = measure()
    add(20)
    assert measure() == few


def test_realized_gains_are_cached_until_the_portfolio_changes(
    book: dict[str, Any], advisor: Any, api: Any, count_queries: Callable[[Callable[[], Any]], int]
) -> None:
    url = f"/api/v1/portfolios/{book['portfolio'].pk}/realized-gains/?year=2026&cost_method=fifo"
    user = type(advisor).objects.get(pk=advisor.pk)
    computed = count_queries(lambda: api(user).get(url))
    cached = count_queries(lambda: api(user).get(url))
    assert cached < computed
    services.allocation_create(
        actor=advisor,
        portfolio=book["portfolio"],
        asset=book["asset"],
        kind="sell",
        quantity=Decimal(10),
        price=Decimal(80),
        date=D(2026, 4, 1),
    )
    assert len(api(advisor).get(url).json()["sales"]) == 2
