"""Reads across assets: the latest close of many assets at once, and who holds an asset (the caller's clients)."""

import datetime
from decimal import Decimal
from typing import Any

import pytest

from clients.tests.factories import ClientFactory, PortfolioFactory, main_portfolio
from holdings.models import Allocation
from holdings.tests.factories import AllocationFactory, AssetFactory, PriceFactory

pytestmark = pytest.mark.django_db
D = datetime.date
LATEST = "/api/v1/prices/latest/"


def by_asset(response: Any) -> dict[int, tuple[str | None, str | None]]:
    assert response.status_code == 200, response.content
    return {row["asset"]: (row["date"], row["close"]) for row in response.json()}


# --- prices/latest/ -----------------------------------------------------------------------------


def test_latest_answers_each_assets_newest_close_with_its_date(advisor, api) -> None:
    sap, eth = AssetFactory(currency="EUR"), AssetFactory()
    PriceFactory(asset=sap, date=D(2026, 3, 2), close=Decimal("219.8"))
    PriceFactory(asset=sap, date=D(2026, 3, 4), close=Decimal("223.1"))
    PriceFactory(asset=eth, date=D(2026, 3, 3), close=Decimal("2050"))
    response = api(advisor).get(f"{LATEST}?asset={sap.pk}&asset={eth.pk}")
    assert by_asset(response) == {sap.pk: ("2026-03-04", "223.1000000000"), eth.pk: ("2026-03-03", "2050.0000000000")}
    assert response.json()[0]["currency"] == "EUR"


def test_latest_takes_ids_separated_by_commas(advisor, api) -> None:
    first, second = PriceFactory(), PriceFactory()
    assert by_asset(api(advisor).get(f"{LATEST}?asset={first.asset_id},{second.asset_id}")).keys() == {
        first.asset_id,
        second.asset_id,
    }


def test_latest_as_of_a_day_ignores_later_closes(advisor, api) -> None:
    asset = AssetFactory()
    PriceFactory(asset=asset, date=D(2026, 3, 2), close=Decimal("1"))
    PriceFactory(asset=asset, date=D(2026, 3, 9), close=Decimal("2"))
    assert by_asset(api(advisor).get(f"{LATEST}?asset={asset.pk}&as_of=2026-03-08")) == {
        asset.pk: ("2026-03-02", "1.0000000000")
    }


def test_latest_answers_null_for_an_asset_without_a_price(advisor, api) -> None:
    asset = AssetFactory()
    assert by_asset(api(advisor).get(f"{LATEST}?asset={asset.pk}")) == {asset.pk: (None, None)}


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("", "asset"),
        ("?asset=", "asset"),
        ("?asset=abc", "asset"),
        ("?asset=1,x", "asset"),
        ("?asset=999999", "asset"),
        ("?as_of=soon&asset=1", "as_of"),
    ],
)
def test_latest_with_bad_input_is_refused_with_400_naming_the_field(query, field, advisor, api) -> None:
    AssetFactory(pk=1)
    response = api(advisor).get(f"{LATEST}{query}")
    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_latest_refuses_more_assets_than_its_cap(advisor, api) -> None:
    ids = ",".join(str(n) for n in range(1, 202))
    assert "asset" in api(advisor).get(f"{LATEST}?asset={ids}").json()


def test_latest_costs_the_same_queries_for_2_assets_as_for_40(advisor, api, count_queries) -> None:
    client = api(advisor)

    def ask(count: int) -> int:
        prices = [PriceFactory() for _ in range(count)]
        for price in prices:
            PriceFactory(asset=price.asset)  # two closes each: the latest must be picked in SQL
        url = LATEST + "?asset=" + ",".join(str(price.asset_id) for price in prices)
        client.get(url)  # the caller's permissions are cached from here on
        return count_queries(lambda: by_asset(client.get(url)))

    assert ask(2) == ask(40) == 1


def test_staff_in_no_group_cannot_read_the_latest_prices(nobody, api) -> None:
    assert api(nobody).get(f"{LATEST}?asset={AssetFactory().pk}").status_code == 403


# --- assets/{id}/holders/ -----------------------------------------------------------------------


def holders(client: Any, asset_id: int, query: str = "") -> dict[int, str]:
    response = client.get(f"/api/v1/assets/{asset_id}/holders/{query}")
    assert response.status_code == 200, response.content
    return {row["portfolio"]: row["quantity"] for row in response.json()["results"]}


def test_holders_are_the_visible_portfolios_holding_the_asset_with_names_and_quantities(advisor, api) -> None:
    asset = AssetFactory()
    mine = ClientFactory(advisor=advisor, name="Elena Rossi")
    isa = PortfolioFactory(client=mine, name="ISA")
    AllocationFactory(client=mine, asset=asset, quantity=Decimal("10"))
    AllocationFactory(portfolio=isa, asset=asset, quantity=Decimal("2.5"))
    response = api(advisor).get(f"/api/v1/assets/{asset.pk}/holders/")
    rows = response.json()["results"]
    assert [(row["client_name"], row["portfolio_name"], row["quantity"]) for row in rows] == [
        ("Elena Rossi", "ISA", "2.5000000000"),
        ("Elena Rossi", "Main", "10.0000000000"),
    ]
    assert {row["client"] for row in rows} == {mine.pk}
    assert response.json()["count"] == 2


def test_an_advisor_sees_only_their_own_clients_among_the_holders(advisor, other_advisor, operations, api) -> None:
    asset = AssetFactory()
    mine = AllocationFactory(client=ClientFactory(advisor=advisor), asset=asset)
    theirs = AllocationFactory(client=ClientFactory(advisor=other_advisor), asset=asset)
    assert holders(api(advisor), asset.pk).keys() == {mine.portfolio_id}
    assert holders(api(other_advisor), asset.pk).keys() == {theirs.portfolio_id}
    assert holders(api(operations), asset.pk).keys() == {mine.portfolio_id, theirs.portfolio_id}


def test_a_portfolio_that_sold_out_or_never_held_the_asset_is_not_a_holder(advisor, api) -> None:
    asset, other = AssetFactory(), AssetFactory()
    client = ClientFactory(advisor=advisor)
    sold_out = main_portfolio(client)
    AllocationFactory(portfolio=sold_out, asset=asset, quantity=Decimal("3"))
    AllocationFactory(portfolio=sold_out, asset=asset, quantity=Decimal("3"), kind=Allocation.Kind.TRANSFER_OUT)
    AllocationFactory(portfolio=PortfolioFactory(client=client), asset=other)
    assert holders(api(advisor), asset.pk) == {}


def test_holders_as_of_a_day_count_the_movements_traded_by_then(advisor, api) -> None:
    asset = AssetFactory()
    portfolio = main_portfolio(ClientFactory(advisor=advisor))
    AllocationFactory(portfolio=portfolio, asset=asset, quantity=Decimal("4"), date=D(2026, 2, 1))
    AllocationFactory(
        portfolio=portfolio, asset=asset, quantity=Decimal("4"), date=D(2026, 3, 1), kind=Allocation.Kind.TRANSFER_OUT
    )
    assert holders(api(advisor), asset.pk, "?as_of=2026-02-28") == {portfolio.pk: "4.0000000000"}
    assert holders(api(advisor), asset.pk, "?as_of=2026-01-31") == {}
    assert holders(api(advisor), asset.pk) == {}  # today: sold out since March


def test_holders_with_a_bad_day_are_refused_with_400_naming_as_of(advisor, api) -> None:
    response = api(advisor).get(f"/api/v1/assets/{AssetFactory().pk}/holders/?as_of=2026-13-01")
    assert response.status_code == 400
    assert "as_of" in response.json()


def test_holders_of_an_unknown_asset_is_404(advisor, api) -> None:
    assert api(advisor).get("/api/v1/assets/999999/holders/").status_code == 404


def test_holders_need_the_permission_to_view_allocations(advisor, api) -> None:
    asset = AssetFactory()
    advisor.groups.first().permissions.remove(*advisor.groups.first().permissions.filter(codename="view_allocation"))
    fresh = type(advisor).objects.get(pk=advisor.pk)
    assert api(fresh).get(f"/api/v1/assets/{asset.pk}/holders/").status_code == 403


def test_holders_cost_the_same_queries_for_5_portfolios_as_for_50(advisor, api, count_queries) -> None:
    asset = AssetFactory()
    client = api(advisor)

    def measure(count: int) -> int:
        AllocationFactory.create_batch(count, asset=asset)  # other advisors' clients: not counted, not shown
        for _ in range(count):
            AllocationFactory(client=ClientFactory(advisor=advisor), asset=asset)
        fresh = type(advisor).objects.get(pk=advisor.pk)
        client.force_authenticate(fresh)
        return count_queries(lambda: holders(client, asset.pk))

    holders(client, asset.pk)  # the caller's grants, looked up once and cached (accounts.grants)
    assert measure(5) == measure(45)
    assert len(holders(client, asset.pk)) == 50
