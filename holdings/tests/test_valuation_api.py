"""The positions and valuation endpoints: visibility, parameters, rounding, query counts and the cache."""

import datetime
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.core.cache import cache
from rest_framework.renderers import JSONRenderer

from clients.tests.factories import ClientFactory, PortfolioFactory, main_portfolio
from holdings import services, valuation
from holdings.models import FxRate
from holdings.tests.factories import AllocationFactory, AssetFactory, BuyFactory, PriceFactory, SellFactory
from holdings.valuation_api import (
    ClientPositionsView,
    ClientValuationView,
    PortfolioPositionsView,
    PortfolioValuationView,
)
from ledger.tests.factories import TransactionFactory

D = Decimal
pytestmark = pytest.mark.django_db
AS_OF = "2026-03-01"


def _holding(client: Any, *, currency: str = "USD", close: str = "110") -> Any:
    asset = AssetFactory(currency=currency)
    PriceFactory(asset=asset, date=datetime.date(2026, 3, 1), close=D(close))
    AllocationFactory(client=client, asset=asset, quantity=D("3"), price=D("100"), date=datetime.date(2026, 1, 5))
    return asset


def test_portfolio_positions_show_cost_gains_and_weight_rounded_to_the_currencys_minor_unit(advisor, api) -> None:
    client = ClientFactory(advisor=advisor, base_currency="USD")
    portfolio = main_portfolio(client)
    asset = AssetFactory(currency="USD")
    TransactionFactory(portfolio=portfolio, currency="USD", amount=D("1000"), date=datetime.date(2026, 1, 1))
    BuyFactory(portfolio=portfolio, asset=asset, quantity=D("3"), price=D("100"), fees=D("1"))
    SellFactory(portfolio=portfolio, asset=asset, quantity=D("1"), price=D("110"), date=datetime.date(2026, 2, 2))
    PriceFactory(asset=asset, date=datetime.date(2026, 3, 1), close=D("120.005"))

    body = api(advisor).get(f"/api/v1/portfolios/{portfolio.pk}/positions/?as_of={AS_OF}").json()

    (position,) = body["positions"]
    # Cost 301 for 3: 100.333... each; 1 sold for 110: realized 9.67 (9.666...); left 2 at cost 200.67 (200.666...).
    assert position["average_cost"] == "100.3333333333"
    assert (position["realized_gain"], position["cost_basis"]) == ("9.67", "200.67")
    # 2 x 120.005 = 240.01; cash 1000 - 301 + 110 = 809: total 1049.01; 240.01 / 1049.01 = 0.2287966...
    assert (position["market_value"], position["unrealized_gain"], position["weight"]) == (
        "240.01",
        "39.34",
        "0.228797",
    )
    assert (body["currency"], body["cost_method"], body["as_of"]) == ("USD", "average", AS_OF)


def test_amounts_in_a_currency_without_minor_units_are_shown_whole(advisor, api) -> None:
    client = ClientFactory(advisor=advisor, base_currency="JPY")
    _holding(client, currency="JPY", close="1000.5")

    body = api(advisor).get(f"/api/v1/portfolios/{main_portfolio(client).pk}/valuation/?as_of={AS_OF}").json()

    # 3 x 1000.5 = 3001.5: half-even to the yen is 3002.
    assert body["totals"]["holdings"] == "3002"


def test_fifo_is_chosen_by_parameter(advisor, api) -> None:
    client = ClientFactory(advisor=advisor, base_currency="USD")
    asset = AssetFactory(currency="USD")
    PriceFactory(asset=asset, date=datetime.date(2026, 3, 1), close=D("1"))
    for day, price in ((5, "100"), (6, "200")):
        AllocationFactory(client=client, asset=asset, quantity=D("1"), price=D(price), date=datetime.date(2026, 1, day))
    AllocationFactory(client=client, asset=asset, kind="transfer_out", quantity=D("1"), date=datetime.date(2026, 2, 1))
    url = f"/api/v1/portfolios/{main_portfolio(client).pk}/positions/?as_of={AS_OF}"

    average = api(advisor).get(url).json()["positions"][0]["cost_basis"]
    fifo = api(advisor).get(url + "&cost_method=fifo").json()["positions"][0]["cost_basis"]

    assert (average, fifo) == ("150.00", "200.00")


def test_valuation_in_another_currency_converts_at_the_rate_of_as_of(advisor, api) -> None:
    client = ClientFactory(advisor=advisor, base_currency="USD")
    _holding(client)
    FxRate.objects.create(base="EUR", quote="USD", date=datetime.date(2026, 1, 1), rate=D("2"))

    body = api(advisor).get(f"/api/v1/portfolios/{main_portfolio(client).pk}/valuation/?as_of={AS_OF}&currency=eur")

    assert body.status_code == 200, body.content
    assert (body.json()["currency"], body.json()["totals"]["holdings"]) == ("EUR", "165.00")


@pytest.mark.parametrize("query", ["cost_method=lifo", "as_of=yesterday", "currency=XXY"])
def test_bad_parameters_are_refused_with_400_naming_them(advisor, api, query: str) -> None:
    client = ClientFactory(advisor=advisor)
    response = api(advisor).get(f"/api/v1/portfolios/{main_portfolio(client).pk}/valuation/?{query}")
    assert response.status_code == 400
    assert query.split("=")[0] in response.json()


@pytest.mark.parametrize(
    "path",
    [
        "portfolios/{portfolio}/positions",
        "portfolios/{portfolio}/valuation",
        "clients/{client}/positions",
        "clients/{client}/valuation",
    ],
)
def test_an_advisor_gets_404_for_another_advisors_client(advisor, api, path: str) -> None:
    others = ClientFactory()
    _holding(others)
    url = "/api/v1/" + path.format(portfolio=main_portfolio(others).pk, client=others.pk) + "/"
    assert api(advisor).get(url).status_code == 404


def test_a_user_without_a_role_is_refused(nobody, api) -> None:
    client = ClientFactory()
    assert api(nobody).get(f"/api/v1/clients/{client.pk}/positions/").status_code == 403


def test_client_positions_combine_its_portfolios_in_its_base_currency(advisor, api) -> None:
    client = ClientFactory(advisor=advisor, base_currency="USD")
    first, second = main_portfolio(client), PortfolioFactory(client=client)
    asset = AssetFactory(currency="USD")
    PriceFactory(asset=asset, date=datetime.date(2026, 3, 1), close=D("10"))
    AllocationFactory(portfolio=first, asset=asset, quantity=D("1"), price=D("4"))
    AllocationFactory(portfolio=second, asset=asset, quantity=D("3"), price=D("8"))

    body = api(advisor).get(f"/api/v1/clients/{client.pk}/positions/?as_of={AS_OF}").json()

    assert body["portfolios"] == [first.pk, second.pk]
    (position,) = body["positions"]
    assert (position["quantity"], position["cost_basis"], position["average_cost"]) == (
        "4.0000000000",
        "28.00",
        "7.0000000000",
    )


@pytest.mark.parametrize("kind", ["portfolio", "client"])
@pytest.mark.parametrize("report", ["positions", "valuation"])
def test_queries_do_not_grow_with_the_number_of_movements(
    advisor, api, count_queries: Callable[[Callable[[], Any]], int], kind: str, report: str
) -> None:
    client = ClientFactory(advisor=advisor, base_currency="EUR")
    portfolio = main_portfolio(client)
    FxRate.objects.create(base="EUR", quote="USD", date=datetime.date(2026, 1, 1), rate=D("1.1"))
    TransactionFactory(portfolio=portfolio, currency="USD", amount=D("1000000"), date=datetime.date(2026, 1, 1))
    url = f"/api/v1/{kind}s/{client.pk if kind == 'client' else portfolio.pk}/{report}/?as_of={AS_OF}"

    def add(movements: int) -> None:
        for n in range(movements):
            asset = AssetFactory(currency="USD")
            PriceFactory(asset=asset, date=datetime.date(2026, 2, 1), close=D("5"))
            maker = SellFactory if n % 3 == 2 else BuyFactory
            maker(portfolio=portfolio, asset=asset, quantity=D("1"), price=D("5"), date=datetime.date(2026, 1, 2))

    def measure() -> tuple[int, int]:
        """The first read after the writes (which refolds the position snapshots) and the next, uncached too."""
        counts = []
        for _ in range(2):
            cache.clear()
            user = type(advisor).objects.get(pk=advisor.pk)
            counts.append(count_queries(lambda: _ok(api(user).get(url))))  # noqa: B023 (called at once)
        return counts[0], counts[1]

    add(5)
    with_five = measure()
    add(45)
    assert measure() == with_five
    # The request's own three (user, roles, permissions), the object (and a client's portfolios), then the current
    # snapshots (a portfolio's with its cash), their holdings joined to their assets with the latest closes, and
    # rates; a client's cash is read from the ledger. A snapshot holds the splits already folded. The first read
    # also locks, refolds and stores. Positions also read the units on hold (one query when there are none).
    assert with_five[1] == {"portfolio": 7, "client": 9}[kind] + (report == "positions")


def _ok(response: Any) -> None:
    assert response.status_code == 200, response.content
    assert len(response.json()["positions"]) >= 5


def test_a_cached_valuation_is_served_until_the_portfolio_changes(advisor, api, count_queries) -> None:
    client = ClientFactory(advisor=advisor, base_currency="USD")
    asset = _holding(client)
    url = f"/api/v1/portfolios/{main_portfolio(client).pk}/valuation/?as_of={AS_OF}"
    first = api(advisor).get(url).json()
    assert first["totals"]["holdings"] == "330.00"

    # A price of an asset the portfolio does not hold leaves its data version, and the cached answer, alone.
    elsewhere = AssetFactory(currency="USD")
    services.price_create(asset=elsewhere, date=datetime.date(2026, 2, 27), close=D("1"))
    assert api(advisor).get(url).json() == first

    services.price_update(price=asset.prices.get(), close=D("120"))
    assert api(advisor).get(url).json()["totals"]["holdings"] == "360.00"


def test_a_cached_answer_is_the_same_json_and_other_renderers_still_render_it(advisor, api) -> None:
    """The cache holds the rendered JSON: a hit writes the very bytes of the miss; the browsable API and an
    `indent` still get the data rendered their way."""
    client = ClientFactory(advisor=advisor, base_currency="USD")
    _holding(client)
    url = f"/api/v1/portfolios/{main_portfolio(client).pk}/valuation/?as_of={AS_OF}"
    miss, hit = api(advisor).get(url), api(advisor).get(url)
    assert (miss.status_code, hit.status_code) == (200, 200)
    assert hit.content == miss.content
    assert hit["Content-Type"] == "application/json"
    assert hit.data == miss.json()

    browsable = api(advisor).get(url + "&format=api", HTTP_ACCEPT="text/html")
    assert browsable.status_code == 200
    assert browsable["Content-Type"].startswith("text/html")
    assert b"330.00" in browsable.content
    indented = api(advisor).get(url, HTTP_ACCEPT="application/json; indent=2")
    assert indented.content.startswith(b'{\n  "')
    assert indented.json() == miss.json()


def test_the_cache_keeps_parameters_apart(advisor, api) -> None:
    client = ClientFactory(advisor=advisor, base_currency="USD")
    _holding(client)
    url = f"/api/v1/portfolios/{main_portfolio(client).pk}/valuation/"
    assert api(advisor).get(url + "?as_of=2026-03-01").json()["totals"]["holdings"] == "330.00"
    assert api(advisor).get(url + "?as_of=2026-02-01").json()["unpriced"] != []


def test_parameters_that_fail_validation_get_a_400_beside_a_cached_answer(advisor, api) -> None:
    """A hit is served without validating its parameters again: only valid ones were ever stored under a key."""
    client = ClientFactory(advisor=advisor, base_currency="USD")
    _holding(client)
    url = f"/api/v1/portfolios/{main_portfolio(client).pk}/valuation/"
    for _ in range(2):  # the miss, then the hit
        assert api(advisor).get(url + "?as_of=2026-03-01&cost_method=fifo").status_code == 200

    for query, field in (
        ("as_of=2026-02-30&cost_method=fifo", "as_of"),
        ("as_of=2026-03-01&cost_method=lifo", "cost_method"),
    ):
        for _ in range(2):  # nothing of a refused request is cached either
            response = api(advisor).get(f"{url}?{query}")
            assert response.status_code == 400, response.content
            assert field in response.json(), response.json()


def test_an_answer_as_of_today_is_not_served_after_midnight(advisor, api) -> None:
    """The parameters are part of the key as given, and the defaults are relative to today: today's date is part of
    the key too (within the cache's lifetime, so the test fails if it is not)."""
    client = ClientFactory(advisor=advisor, base_currency="USD")
    _holding(client)
    url = f"/api/v1/portfolios/{main_portfolio(client).pk}/valuation/"
    with time_machine.travel(datetime.datetime(2026, 3, 2, 23, 59, 50, tzinfo=datetime.UTC), tick=False):
        assert api(advisor).get(url).json()["as_of"] == "2026-03-02"
    with time_machine.travel(datetime.datetime(2026, 3, 3, 0, 0, 10, tzinfo=datetime.UTC), tick=False):
        assert api(advisor).get(url).json()["as_of"] == "2026-03-03"


@pytest.mark.parametrize(
    "view", [PortfolioPositionsView, PortfolioValuationView, ClientPositionsView, ClientValuationView]
)
def test_the_lean_rendering_gives_the_serializers_json_byte_for_byte(advisor, view: Any) -> None:
    """Every kind of figure: priced, unpriced, sold out, stale, a rate missing for an asset and for cash, amounts
    in currencies with 2 and 0 minor units."""
    client = ClientFactory(advisor=advisor, base_currency="EUR")
    portfolio = main_portfolio(client)
    FxRate.objects.create(base="EUR", quote="USD", date=datetime.date(2026, 1, 1), rate=D("1.0812345"))
    FxRate.objects.create(base="EUR", quote="JPY", date=datetime.date(2026, 1, 1), rate=D("161.5"))
    TransactionFactory(portfolio=portfolio, currency="USD", amount=D("100000"), date=datetime.date(2026, 1, 1))
    TransactionFactory(portfolio=portfolio, currency="CHF", amount=D("10"), date=datetime.date(2026, 1, 1))
    priced, stale, unpriced, sold, unrated, yen = (
        AssetFactory(currency="USD"),
        AssetFactory(currency="USD"),
        AssetFactory(currency="USD"),
        AssetFactory(currency="USD"),
        AssetFactory(currency="GBP"),
        AssetFactory(currency="JPY"),
    )
    PriceFactory(asset=priced, date=datetime.date(2026, 2, 27), close=D("12.3456789"))
    PriceFactory(asset=stale, date=datetime.date(2025, 6, 1), close=D("7"))
    PriceFactory(asset=sold, date=datetime.date(2026, 2, 27), close=D("3"))
    PriceFactory(asset=unrated, date=datetime.date(2026, 2, 27), close=D("3"))
    PriceFactory(asset=yen, date=datetime.date(2026, 2, 27), close=D("1234.5"))
    for asset in (priced, stale, unpriced, sold, unrated, yen):
        BuyFactory(portfolio=portfolio, asset=asset, quantity=D("3.3"), price=D("2.17"), date=datetime.date(2026, 1, 5))
    SellFactory(portfolio=portfolio, asset=sold, quantity=D("3.3"), price=D("2.9"), date=datetime.date(2026, 2, 2))
    as_of = datetime.date(2026, 3, 1)
    if view in (PortfolioPositionsView, PortfolioValuationView):
        report, ids = (
            valuation.portfolio_valuation(portfolio=portfolio, as_of=as_of),
            {
                "portfolio": portfolio.pk,
                "client": client.pk,
            },
        )
    else:
        report = valuation.client_valuation(client=client, portfolio_ids=[portfolio.pk], as_of=as_of)
        ids = {"client": client.pk, "portfolios": [portfolio.pk]}
    assert report.unpriced
    assert report.missing_fx
    assert any(p.stale for p in report.positions)

    renderer = JSONRenderer()
    lean = view().render(report, **ids)
    slow = view.output(view().report_fields(report, **ids), context={"currency": report.currency}).data

    assert renderer.render(lean) == renderer.render(slow)
