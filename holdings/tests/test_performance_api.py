"""The performance endpoints: figures read from the daily value table, edge cases, visibility, query counts, cache."""

import datetime
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.core.cache import cache

from clients.models import Portfolio
from clients.services import portfolios_history_changed
from clients.tests.factories import ClientFactory, PortfolioFactory, main_portfolio
from holdings.models import FxRate
from holdings.services import daily_values_refresh
from holdings.tests.factories import AllocationFactory, AssetFactory, BuyFactory, PriceFactory, SellFactory
from ledger.services import cash_transfer
from ledger.tests.factories import TransactionFactory

D = Decimal
pytestmark = pytest.mark.django_db
DAY0 = datetime.date(2025, 3, 1)


def day(n: int) -> datetime.date:
    return DAY0 + datetime.timedelta(days=n)


def stale(*portfolios: Portfolio) -> None:
    """Rows made by factories bypass the services: mark their history changed, as every service does."""
    portfolios_history_changed(portfolios=[p.pk for p in portfolios], since=datetime.date(2000, 1, 1))


def textbook(client: Any) -> tuple[Portfolio, Any]:
    """100 units transferred in at close 1 (value 100) on day 0; close 1.1 on day 1 (110, +10%); 100 deposited on
    day 2 (210); close 1.205 on day 3: 120.5 + 100 = 220.5 (+5% on 210)."""
    portfolio = main_portfolio(client)
    asset = AssetFactory(currency=client.base_currency)
    for n, close in ((0, "1"), (1, "1.1"), (3, "1.205")):
        PriceFactory(asset=asset, date=day(n), close=D(close))
    AllocationFactory(portfolio=portfolio, asset=asset, quantity=D("100"), price=D("1"), date=day(0))
    TransactionFactory(portfolio=portfolio, amount=D("100"), date=day(2))
    stale(portfolio)
    return portfolio, asset


def test_the_textbook_example_gives_15_5_percent_time_weighted_and_10_25_simple(advisor, api) -> None:
    portfolio, _ = textbook(ClientFactory(advisor=advisor, base_currency="EUR"))

    body = api(advisor).get(f"/api/v1/portfolios/{portfolio.pk}/performance/?start={day(1)}&end={day(3)}").json()

    figures = body["figures"]
    assert (figures["start_value"], figures["end_value"], figures["inflows"]) == ("100.00", "220.50", "100.00")
    # 1.1 x 1.05 - 1 = 15.5%; gain 220.5 - 100 - 100 = 20.5 over 200 = 10.25%.
    assert D(figures["time_weighted"]) == D("0.155")
    assert D(figures["simple"]) == D("0.1025")
    assert figures["time_weighted_annualized"] is None  # three days: never extrapolated to a year
    assert [d["daily_return"] for d in body["series"]] == ["0.1000000000", "0.0000000000", "0.0500000000"]
    assert [d["external_flow"] for d in body["series"]] == ["0.00", "100.00", "0.00"]


def test_since_inception_starts_from_zero_on_the_first_movement(advisor, api) -> None:
    portfolio, _ = textbook(ClientFactory(advisor=advisor, base_currency="EUR"))

    body = api(advisor).get(f"/api/v1/portfolios/{portfolio.pk}/performance/?end={day(3)}").json()

    # The 100 transferred in on day 0 is an inflow at that day's start (0% that day): the same 15.5%.
    assert (body["inception"], body["figures"]["start"], body["figures"]["first_day"]) == (str(day(0)),) * 3
    assert D(body["figures"]["time_weighted"]) == D("0.155")
    periods = {period["name"]: period for period in body["periods"]}
    assert D(periods["since_inception"]["time_weighted"]) == D("0.155")
    assert D(periods["MTD"]["time_weighted"]) == D("0.155")  # the history starts on the 1st of the month
    assert periods["1Y"]["available"] is False  # four days of history cannot show a year
    assert periods["3Y"]["time_weighted"] is None


def test_a_portfolio_without_history_answers_with_no_figures(advisor, api) -> None:
    portfolio = main_portfolio(ClientFactory(advisor=advisor))

    body = api(advisor).get(f"/api/v1/portfolios/{portfolio.pk}/performance/").json()

    assert body["figures"]["available"] is False
    assert body["figures"]["time_weighted"] is None
    assert body["series"] == []
    assert body["warnings"] == ["No history: there is no movement on or before the end of the period."]


def test_buys_and_sells_are_internal_and_a_year_is_annualized(advisor, api) -> None:
    client = ClientFactory(advisor=advisor, base_currency="USD")
    portfolio = main_portfolio(client)
    asset = AssetFactory(currency="USD")
    # 1000 deposited; half bought at 100 mid-period (5 units); the close doubles by the end: 500 + 1000 = 1500.
    TransactionFactory(portfolio=portfolio, amount=D("1000"), date=day(0))
    PriceFactory(asset=asset, date=day(100), close=D("100"))
    BuyFactory(portfolio=portfolio, asset=asset, quantity=D("5"), price=D("100"), date=day(100))
    PriceFactory(asset=asset, date=day(364), close=D("200"))
    stale(portfolio)

    body = api(advisor).get(f"/api/v1/portfolios/{portfolio.pk}/performance/?end={day(364)}").json()

    figures = body["figures"]
    # The buy is no flow: only the deposit is. 1000 -> 1500 over 365 days: 50% cumulative and annualized, and the
    # money-weighted return of -1000 on day 0 and +1500 365 days later is 50% too.
    assert sum(D(d["external_flow"]) for d in body["series"]) == D("1000")
    assert D(figures["time_weighted"]) == D("0.5")
    assert D(figures["time_weighted_annualized"]) == D("0.5")
    assert abs(D(figures["money_weighted"]) - D("0.5")) < D("1e-6")
    assert D(figures["simple"]) == D("0.5")


def test_the_client_figures_sum_its_portfolios_in_its_base_currency(advisor, api) -> None:
    client = ClientFactory(advisor=advisor, base_currency="EUR")
    euro, dollar = main_portfolio(client), PortfolioFactory(client=client, base_currency="USD")
    FxRate.objects.create(base="EUR", quote="USD", date=day(0), rate=D("2"))
    FxRate.objects.create(base="EUR", quote="USD", date=day(1), rate=D("1"))
    TransactionFactory(portfolio=euro, amount=D("100"), currency="EUR", date=day(0))
    TransactionFactory(portfolio=dollar, amount=D("200"), currency="USD", date=day(0))
    stale(euro, dollar)

    body = api(advisor).get(f"/api/v1/clients/{client.pk}/performance/?end={day(1)}").json()

    # Day 0: 100 + 200 USD at 2 = 200 EUR; day 1 the dollar doubles against the euro: 100 + 200 = 300, +50%.
    assert [d["value"] for d in body["series"]] == ["200.00", "300.00"]
    assert D(body["figures"]["time_weighted"]) == D("0.5")
    assert body["portfolios"] == [euro.pk, dollar.pk]


def test_a_transfer_between_the_clients_portfolios_is_no_flow_of_the_client(advisor, operations, api) -> None:
    client = ClientFactory(advisor=advisor, base_currency="EUR")
    first, second = main_portfolio(client), PortfolioFactory(client=client)
    TransactionFactory(portfolio=first, amount=D("100"), date=day(0))
    stale(first, second)
    cash_transfer(
        actor=operations,
        from_portfolio_id=first.pk,
        to_portfolio_id=second.pk,
        amount=D("40"),
        currency="EUR",
        date=day(1),
    )

    client_body = api(advisor).get(f"/api/v1/clients/{client.pk}/performance/?end={day(1)}").json()
    second_body = api(advisor).get(f"/api/v1/portfolios/{second.pk}/performance/?end={day(1)}").json()

    assert [d["external_flow"] for d in client_body["series"]] == ["100.00", "0.00"]
    assert second_body["series"][0]["external_flow"] == "40.00"


def test_money_in_and_out_on_one_day_are_two_flows_for_the_portfolio_and_the_client(advisor, operations, api) -> None:
    """A deposit into one portfolio, a withdrawal from the other and a transfer between them, all on one day: the
    portfolio's return counts its deposit at the day's start and its withdrawal at its end, never their net; the
    client's counts the deposit and the withdrawal, and not the transfer."""
    client = ClientFactory(advisor=advisor, base_currency="EUR")
    first, second = main_portfolio(client), PortfolioFactory(client=client)
    asset = AssetFactory(currency="EUR")
    PriceFactory(asset=asset, date=day(0), close=D("1"))
    PriceFactory(asset=asset, date=day(1), close=D("1.1"))
    AllocationFactory(portfolio=first, asset=asset, quantity=D("100"), price=D("1"), date=day(0))
    TransactionFactory(portfolio=second, amount=D("80"), date=day(0))
    TransactionFactory(portfolio=first, amount=D("50"), date=day(1))
    TransactionFactory(portfolio=first, kind="withdrawal", amount=D("50"), date=day(1))
    TransactionFactory(portfolio=second, kind="withdrawal", amount=D("30"), date=day(1))
    stale(first, second)
    cash_transfer(
        actor=operations, from_portfolio_id=second.pk, to_portfolio_id=first.pk, amount=D("20"), currency="EUR",
        date=day(1),
    )  # fmt: skip
    query = f"?start={day(1)}&end={day(1)}"

    portfolio = api(advisor).get(f"/api/v1/portfolios/{first.pk}/performance/{query}").json()
    whole = api(advisor).get(f"/api/v1/clients/{client.pk}/performance/{query}").json()

    # The first portfolio: 100 at the start; 50 deposited and 20 transferred in at the start, 50 withdrawn at the
    # end; 110 in units and the 20 left: (130 + 50) / (100 + 70) - 1 = 1/17. Netted (+20 in) it would read 130/120.
    (day_one,) = portfolio["series"]
    assert (day_one["inflow"], day_one["outflow"], day_one["external_flow"]) == ("70.00", "50.00", "20.00")
    assert D(portfolio["figures"]["time_weighted"]) == (D(1) / D(17)).quantize(D("1e-10"))
    assert (portfolio["figures"]["inflows"], portfolio["figures"]["outflows"]) == ("70.00", "50.00")
    # The client: 180 at the start (100 in units, 80 cash); in 50, out 50 + 30, the transfer no flow of its own;
    # 110 in units and 20 + 30 cash at the end: (160 + 80) / (180 + 50) - 1 = 10/230 (netted, 190/180 - 1).
    (client_day,) = whole["series"]
    assert (client_day["inflow"], client_day["outflow"]) == ("50.00", "80.00")
    assert D(whole["figures"]["time_weighted"]) == (D(10) / D(230)).quantize(D("1e-10"))


def test_a_benchmark_adds_its_price_return_over_the_same_days(advisor, api) -> None:
    portfolio, _ = textbook(ClientFactory(advisor=advisor, base_currency="EUR"))
    index = AssetFactory(currency="EUR")
    PriceFactory(asset=index, date=day(-5), close=D("200"))  # the close before the first day with a return
    PriceFactory(asset=index, date=day(2), close=D("210"))

    body = api(advisor).get(f"/api/v1/portfolios/{portfolio.pk}/performance/?end={day(3)}&benchmark={index.pk}")

    benchmark = body.json()["benchmark"]
    assert (benchmark["start"], benchmark["start_close"], benchmark["end_close"]) == (str(day(-1)), "200.00", "210.00")
    assert D(benchmark["cumulative"]) == D("0.05")  # 210 / 200 - 1
    assert [d["benchmark_cumulative_return"] for d in body.json()["series"]][1:3] == ["0.0000000000", "0.0500000000"]


@pytest.mark.parametrize("query", ["benchmark=999999", "start=2025-03-05&end=2025-03-01", "currency=XXY", "end=x"])
def test_bad_parameters_are_refused_with_400_naming_them(advisor, api, query: str) -> None:
    portfolio = main_portfolio(ClientFactory(advisor=advisor))
    response = api(advisor).get(f"/api/v1/portfolios/{portfolio.pk}/performance/?{query}")
    assert response.status_code == 400
    assert query.split("=")[0] in response.json()


def test_a_position_bought_mid_period_earns_its_own_money_weighted_return(advisor, api) -> None:
    client = ClientFactory(advisor=advisor, base_currency="USD")
    portfolio = main_portfolio(client)
    asset = AssetFactory(currency="USD")
    TransactionFactory(portfolio=portfolio, amount=D("10000"), date=day(0))
    # Paid 10 x 100 + 1 fee = 1001 on day 10; 10 x 110.11 = 1101.1 received 365 days later: 1101.1 / 1001 - 1.
    BuyFactory(portfolio=portfolio, asset=asset, quantity=D("10"), price=D("100"), fees=D("1"), date=day(10))
    PriceFactory(asset=asset, date=day(375), close=D("110.11"))
    stale(portfolio)

    for path in (f"portfolios/{portfolio.pk}", f"clients/{client.pk}"):
        body = api(advisor).get(f"/api/v1/{path}/positions/{asset.pk}/performance/?end={day(375)}").json()

        assert [(f["date"], f["amount"], f["kind"]) for f in body["flows"]] == [
            (str(day(10)), "-1001.00", "buy"),
            (str(day(375)), "1101.10", "end_value"),
        ]
        assert abs(D(body["money_weighted"]) - D("0.1")) < D("1e-6")
        assert (body["gain"], body["start"], body["error"]) == ("100.10", str(day(10)), None)


def test_a_position_sold_out_has_a_rate_from_its_trades_alone(advisor, api) -> None:
    client = ClientFactory(advisor=advisor, base_currency="USD")
    portfolio = main_portfolio(client)
    asset = AssetFactory(currency="USD")
    TransactionFactory(portfolio=portfolio, amount=D("10000"), date=day(0))
    BuyFactory(portfolio=portfolio, asset=asset, quantity=D("10"), price=D("100"), date=day(0))
    SellFactory(portfolio=portfolio, asset=asset, quantity=D("10"), price=D("121"), date=day(730))
    stale(portfolio)

    body = api(advisor).get(f"/api/v1/portfolios/{portfolio.pk}/positions/{asset.pk}/performance/?end={day(800)}")

    # -1000 then +1210 two years (730 days) later: 10% a year; nothing held at the end.
    assert abs(D(body.json()["money_weighted"]) - D("0.1")) < D("1e-6")
    assert body.json()["end_value"] == "0.00"


def test_a_position_never_held_explains_why_it_has_no_rate(advisor, api) -> None:
    portfolio = main_portfolio(ClientFactory(advisor=advisor))
    asset = AssetFactory()

    body = api(advisor).get(f"/api/v1/portfolios/{portfolio.pk}/positions/{asset.pk}/performance/").json()

    assert body["money_weighted"] is None
    assert "both paid in and paid out" in body["error"]


@pytest.mark.parametrize(
    "path",
    [
        "portfolios/{portfolio}/performance",
        "clients/{client}/performance",
        "portfolios/{portfolio}/positions/{asset}/performance",
        "clients/{client}/positions/{asset}/performance",
    ],
)
def test_an_advisor_gets_404_for_another_advisors_client(advisor, api, path: str) -> None:
    others = ClientFactory()
    _, asset = textbook(others)
    url = "/api/v1/" + path.format(portfolio=main_portfolio(others).pk, client=others.pk, asset=asset.pk) + "/"
    assert api(advisor).get(url).status_code == 404


def test_a_user_without_a_role_is_refused(nobody, api) -> None:
    client = ClientFactory()
    assert api(nobody).get(f"/api/v1/clients/{client.pk}/performance/").status_code == 403


@pytest.mark.parametrize("kind", ["portfolio", "client"])
def test_queries_do_not_grow_with_the_days_movements_or_portfolios(
    advisor, api, count_queries: Callable[[Callable[[], Any]], int], kind: str
) -> None:
    client = ClientFactory(advisor=advisor, base_currency="EUR")
    portfolio = main_portfolio(client)
    FxRate.objects.create(base="EUR", quote="USD", date=day(0), rate=D("1.1"))
    benchmark = AssetFactory(currency="USD")
    PriceFactory(asset=benchmark, date=day(0), close=D("10"))
    url = f"/api/v1/{kind}s/{client.pk if kind == 'client' else portfolio.pk}/performance/"
    url += f"?start={day(1)}&end={day(60)}&benchmark={benchmark.pk}"

    def add(count: int) -> None:
        for n in range(count):
            target = PortfolioFactory(client=client, base_currency="USD") if kind == "client" else portfolio
            TransactionFactory(portfolio=target, currency="USD", amount=D("100"), date=day(n))
        stale(*client.portfolios.all())
        daily_values_refresh(until=day(60))

    def measure() -> int:
        cache.clear()
        user = type(advisor).objects.get(pk=advisor.pk)
        return count_queries(lambda: _ok(api(user).get(url)))

    add(3)
    with_three = measure()
    add(20)
    assert measure() == with_three
    # The request's own three (user, roles, permissions), the benchmark, the object (and a client's portfolios), the
    # staleness check, the daily values, (for the client's dollar portfolios) the rates, the benchmark's prices and
    # their rates.
    assert with_three == {"portfolio": 9, "client": 11}[kind]


def _ok(response: Any) -> None:
    assert response.status_code == 200, response.content
    assert response.json()["figures"]["available"]


def test_a_cached_answer_is_served_until_the_portfolio_changes(advisor, api, count_queries) -> None:
    portfolio, _ = textbook(ClientFactory(advisor=advisor, base_currency="EUR"))
    url = f"/api/v1/portfolios/{portfolio.pk}/performance/?start={day(1)}&end={day(3)}"
    first = api(advisor).get(url).json()
    user = type(advisor).objects.get(pk=advisor.pk)

    # Served from the cache: the portfolio only (the caller's roles and permissions come from the cache too, by
    # accounts.grants), nothing of the history.
    assert count_queries(lambda: api(user).get(url)) == 1
    assert api(advisor).get(url).json() == first

    TransactionFactory(portfolio=portfolio, amount=D("10"), date=day(3))
    stale(portfolio)
    assert api(advisor).get(url).json()["figures"]["end_value"] == "230.50"
