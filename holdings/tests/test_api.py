from decimal import Decimal
from typing import Any

import pytest
from django.db import connection

from clients.models import Portfolio
from clients.tests.factories import ClientFactory, PortfolioFactory, main_portfolio
from holdings.models import Allocation, Asset, Price
from holdings.selectors import position
from holdings.tests.factories import AllocationFactory, AssetFactory, BuyFactory, PriceFactory
from ledger.models import Transaction
from ledger.tests.factories import TransactionFactory

pytestmark = pytest.mark.django_db


def ids(response: Any) -> set[int]:
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


# --- Assets ---------------------------------------------------------------------------------


def test_operations_create_an_asset_normalised_and_validated(operations, api) -> None:
    body = {"ticker": "asml", "exchange": "xams", "name": "ASML", "currency": "eur", "isin": "NL0010273215"}
    response = api(operations).post("/api/v1/assets/", body)
    assert response.status_code == 201, response.content
    assert (response.json()["ticker"], response.json()["exchange"], response.json()["currency"]) == (
        "ASML",
        "XAMS",
        "EUR",
    )
    duplicate = api(operations).post("/api/v1/assets/", {**body, "ticker": "ASML"})
    assert duplicate.status_code == 400
    bad = api(operations).post(
        "/api/v1/assets/", {**body, "ticker": "X", "isin": "NL0010273216", "asset_type": "tulip"}
    )
    assert bad.status_code == 400
    assert {"isin", "asset_type"} <= set(bad.json())


def test_advisors_and_auditors_read_assets_but_cannot_write_them(advisor, auditor, api) -> None:
    asset = AssetFactory()
    for user in (advisor, auditor):
        assert ids(api(user).get("/api/v1/assets/")) == {asset.pk}
        assert api(user).post("/api/v1/assets/", {"ticker": "X", "name": "X", "currency": "USD"}).status_code == 403
        assert api(user).delete(f"/api/v1/assets/{asset.pk}/").status_code == 403


def test_staff_in_no_group_cannot_read_reference_data(nobody, api) -> None:
    assert api(nobody).get("/api/v1/assets/").status_code == 403
    assert api(nobody).get("/api/v1/prices/").status_code == 403


def test_an_asset_in_use_cannot_be_deleted(operations, api) -> None:
    allocation = AllocationFactory()
    assert api(operations).delete(f"/api/v1/assets/{allocation.asset_id}/").status_code == 409
    unused = AssetFactory()
    assert api(operations).delete(f"/api/v1/assets/{unused.pk}/").status_code == 204


def test_assets_filter_by_type_exchange_currency_ticker_and_search(operations, api) -> None:
    etf = AssetFactory(ticker="VWRL", exchange="XAMS", currency="EUR", asset_type="etf", name="Vanguard All-World")
    stock = AssetFactory(ticker="AAPL", exchange="XNAS", currency="USD", name="Apple")
    c = api(operations)
    assert ids(c.get("/api/v1/assets/?asset_type=etf")) == {etf.pk}
    assert ids(c.get("/api/v1/assets/?exchange=xnas")) == {stock.pk}
    assert ids(c.get("/api/v1/assets/?currency=EUR")) == {etf.pk}
    assert ids(c.get("/api/v1/assets/?ticker=aapl")) == {stock.pk}
    assert ids(c.get("/api/v1/assets/?search=vanguard")) == {etf.pk}


def test_assets_list_query_count_does_not_grow_with_rows(advisor, api, assert_list_queries_constant) -> None:
    assert_list_queries_constant(api(advisor), "/api/v1/assets/", AssetFactory.create_batch)


# --- Prices ---------------------------------------------------------------------------------


def test_operations_record_a_price_and_duplicates_are_refused(operations, api) -> None:
    asset = AssetFactory(currency="EUR")
    body = {"asset": asset.pk, "date": "2026-06-01", "close": "112.3456789012"}
    response = api(operations).post("/api/v1/prices/", body)
    assert response.status_code == 201, response.content
    assert (response.json()["close"], response.json()["currency"]) == ("112.3456789012", "EUR")
    assert api(operations).post("/api/v1/prices/", body).status_code == 400
    negative = api(operations).post("/api/v1/prices/", {**body, "date": "2026-06-02", "close": "-1"})
    assert negative.status_code == 400
    assert "close" in negative.json()


def test_prices_are_updated_and_deleted_by_operations(operations, api) -> None:
    price = PriceFactory()
    assert api(operations).patch(f"/api/v1/prices/{price.pk}/", {"close": "101.5"}).status_code == 200
    price.refresh_from_db()
    assert price.close == Decimal("101.5")
    assert api(operations).delete(f"/api/v1/prices/{price.pk}/").status_code == 204
    assert not Price.objects.exists()


def test_prices_filter_by_asset_and_date_range(advisor, api) -> None:
    asset = AssetFactory()
    inside = PriceFactory(asset=asset, date="2026-02-10")
    PriceFactory(asset=asset, date="2026-03-10")
    PriceFactory(date="2026-02-10")
    response = api(advisor).get(f"/api/v1/prices/?asset={asset.pk}&date_after=2026-02-01&date_before=2026-02-28")
    assert ids(response) == {inside.pk}


def test_prices_list_query_count_does_not_grow_with_rows(advisor, api, assert_list_queries_constant) -> None:
    assert_list_queries_constant(api(advisor), "/api/v1/prices/", PriceFactory.create_batch)


# --- Allocations ------------------------------------------------------------------------------


@pytest.fixture
def funded(advisor: Any) -> Any:
    client = ClientFactory(advisor=advisor)
    TransactionFactory(client=client, amount=Decimal("5000"), currency="USD")
    return client


def buy(client_id: int, asset_id: int, quantity: str = "10", **extra: Any) -> dict[str, Any]:
    return {
        "client": client_id,
        "asset": asset_id,
        "kind": "buy",
        "quantity": quantity,
        "price": "100.25",
        "fees": "1.50",
        "date": "2026-06-02",
        **extra,
    }


def test_a_buy_through_the_api_settles_in_cash(advisor, funded, api) -> None:
    asset = AssetFactory(currency="USD")
    response = api(advisor).post("/api/v1/allocations/", buy(funded.pk, asset.pk))
    assert response.status_code == 201, response.content
    body = response.json()
    settlement = Transaction.objects.get(pk=body["settlement"])
    assert (settlement.kind, settlement.amount) == ("buy", Decimal("1004.0000"))
    assert (body["quantity"], body["currency"]) == ("10.0000000000", "USD")
    balances = api(advisor).get(f"/api/v1/clients/{funded.pk}/balances/").json()["balances"]
    assert balances == [{"currency": "USD", "amount": "3996.0000", "on_hold": "0.0000", "available": "3996.0000"}]


def test_a_buy_beyond_the_cash_and_a_sell_beyond_the_units_get_409(advisor, funded, api) -> None:
    asset = AssetFactory(currency="USD")
    too_big = api(advisor).post("/api/v1/allocations/", buy(funded.pk, asset.pk, "50"))
    assert too_big.status_code == 409
    assert "Insufficient cash" in too_big.json()["detail"]
    short = api(advisor).post("/api/v1/allocations/", buy(funded.pk, asset.pk, "1", kind="sell"))
    assert short.status_code == 409
    assert "Not enough units" in short.json()["detail"]
    assert not Allocation.objects.exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("quantity", "0"),
        ("quantity", "-1"),
        ("price", "-1"),
        ("fees", "-0.01"),
        ("taxes", "-0.01"),
        ("taxes", "1.00001"),
        ("kind", "gift"),
        ("asset", "999999"),
    ],
)
def test_invalid_allocation_fields_get_a_400_naming_the_field(field: str, value: str, advisor, funded, api) -> None:
    response = api(advisor).post("/api/v1/allocations/", buy(funded.pk, AssetFactory().pk, **{field: value}))
    assert response.status_code == 400
    assert field in response.json()


def test_advisor_sees_and_trades_only_for_their_clients(advisor, other_advisor, funded, api) -> None:
    mine = AllocationFactory(client=funded)
    theirs = AllocationFactory(client=ClientFactory(advisor=other_advisor))
    c = api(advisor)
    assert ids(c.get("/api/v1/allocations/")) == {mine.pk}
    assert c.get(f"/api/v1/allocations/{theirs.pk}/").status_code == 404
    assert c.patch(f"/api/v1/allocations/{theirs.pk}/", {"notes": "x"}).status_code == 404
    assert c.delete(f"/api/v1/allocations/{theirs.pk}/").status_code == 404
    refused = c.post("/api/v1/allocations/", buy(theirs.client_id, AssetFactory().pk, kind="transfer_in"))
    assert refused.status_code == 400
    assert "client" in refused.json()
    moved = c.patch(f"/api/v1/allocations/{mine.pk}/", {"client": theirs.client_id})
    assert moved.status_code == 400
    assert ids(c.get(f"/api/v1/allocations/?search={theirs.client.name}")) == set()


def test_changing_and_deleting_a_trade_through_the_api_resettles_it(advisor, funded, api) -> None:
    asset = AssetFactory(currency="USD")
    created = api(advisor).post("/api/v1/allocations/", buy(funded.pk, asset.pk)).json()
    changed = api(advisor).patch(f"/api/v1/allocations/{created['id']}/", {"quantity": "20"})
    assert changed.status_code == 200, changed.content
    assert changed.json()["settlement"] != created["settlement"]
    assert Transaction.objects.filter(reverses_id=created["settlement"]).exists()
    assert api(advisor).delete(f"/api/v1/allocations/{created['id']}/").status_code == 204
    balances = api(advisor).get(f"/api/v1/clients/{funded.pk}/balances/").json()["balances"]
    assert balances == [{"currency": "USD", "amount": "5000.0000", "on_hold": "0.0000", "available": "5000.0000"}]


def test_auditor_reads_allocations_but_cannot_write_them(auditor, api) -> None:
    allocation = AllocationFactory()
    assert ids(api(auditor).get("/api/v1/allocations/")) == {allocation.pk}
    assert api(auditor).delete(f"/api/v1/allocations/{allocation.pk}/").status_code == 403


def test_allocations_filter_by_client_asset_kind_and_date_range(operations, api) -> None:
    first = BuyFactory(date="2026-01-10")
    second = AllocationFactory(client=first.client, date="2026-02-10")
    third = AllocationFactory(asset=first.asset, date="2026-03-10", kind="transfer_in")
    c = api(operations)
    assert ids(c.get(f"/api/v1/allocations/?client={first.client_id}")) == {first.pk, second.pk}
    assert ids(c.get(f"/api/v1/allocations/?asset={first.asset_id}")) == {first.pk, third.pk}
    assert ids(c.get("/api/v1/allocations/?kind=buy")) == {first.pk}
    assert ids(c.get("/api/v1/allocations/?date_after=2026-02-01&date_before=2026-02-28")) == {second.pk}


def test_allocations_list_query_count_does_not_grow_with_rows(advisor, api, assert_list_queries_constant) -> None:
    client = ClientFactory(advisor=advisor)
    assert_list_queries_constant(
        api(advisor), "/api/v1/allocations/", lambda n: BuyFactory.create_batch(n, client=client)
    )


@pytest.mark.parametrize("asset_type", Asset.AssetType.values)
def test_every_asset_type_is_accepted_by_the_api_and_the_database_and_read_back(asset_type, operations, api) -> None:
    # The serializer's choices, the model's and the database's check constraint must list the same types.
    body = {"ticker": "X", "name": "X", "currency": "USD", "asset_type": asset_type}
    response = api(operations).post("/api/v1/assets/", body)
    assert response.status_code == 201, response.content
    assert api(operations).get(f"/api/v1/assets/{response.json()['id']}/").json()["asset_type"] == asset_type
    assert Asset.objects.get().asset_type == asset_type


def test_a_buy_too_large_for_the_ledger_gets_a_400_not_a_500(advisor, funded, api) -> None:
    body = buy(funded.pk, AssetFactory(currency="USD").pk, "1000000000000000", price="1000000000000000")
    response = api(advisor).post("/api/v1/allocations/", body)
    assert response.status_code == 400
    assert "quantity" in response.json()


@pytest.mark.skipif(connection.vendor != "sqlite", reason="only SQLite rounds past 15 significant digits")
@pytest.mark.parametrize(
    ("field", "value"),
    [("quantity", "100000.0000000001"), ("price", "123456.7890123456"), ("fees", "999999999999.9999")],
)
def test_a_number_sqlite_would_round_gets_a_400_naming_the_field(field: str, value: str, advisor, funded, api) -> None:
    response = api(advisor).post("/api/v1/allocations/", buy(funded.pk, AssetFactory().pk, **{field: value}))
    assert response.status_code == 400
    assert "15" in response.json()[field][0]
    assert not Allocation.objects.exists()


@pytest.mark.skipif(connection.vendor != "sqlite", reason="only SQLite rounds past 15 significant digits")
def test_a_price_sqlite_would_round_gets_a_400(operations, api) -> None:
    asset = AssetFactory()
    response = api(operations).post(
        "/api/v1/prices/", {"asset": asset.pk, "date": "2026-06-01", "close": "12345.67890123456"}
    )
    assert response.status_code == 400
    assert "close" in response.json()
    assert not Price.objects.exists()


@pytest.mark.parametrize("close", ["\u0661\u0662", "\uff11\uff12", "1e2", "1_0", "NaN"])
def test_a_price_not_in_ascii_digits_is_refused_with_400_naming_close(operations, api, close) -> None:
    asset = AssetFactory()

    response = api(operations).post("/api/v1/prices/", {"asset": asset.pk, "date": "2026-01-05", "close": close})

    assert response.status_code == 400, response.content
    assert list(response.json()) == ["close"]


def test_an_asset_with_a_non_ascii_ticker_is_refused_with_400_naming_ticker(operations, api) -> None:
    response = api(operations).post(
        "/api/v1/assets/", {"ticker": "\u0410APL", "exchange": "XNAS", "name": "Lookalike", "currency": "USD"}
    )

    assert response.status_code == 400, response.content
    assert list(response.json()) == ["ticker"]
    assert not Asset.objects.exists()


# --- Portfolios ------------------------------------------------------------------------------------------


def test_a_buy_naming_only_its_client_goes_to_the_clients_single_portfolio(advisor, funded, api) -> None:
    response = api(advisor).post("/api/v1/allocations/", buy(funded.pk, AssetFactory(currency="USD").pk))
    assert response.status_code == 201, response.content
    portfolio = main_portfolio(funded)
    assert (response.json()["client"], response.json()["portfolio"]) == (funded.pk, portfolio.pk)
    assert Transaction.objects.get(pk=response.json()["settlement"]).portfolio_id == portfolio.pk


def test_naming_only_a_client_with_several_portfolios_is_refused_with_400_on_portfolio(advisor, funded, api) -> None:
    PortfolioFactory(client=funded)
    response = api(advisor).post("/api/v1/allocations/", buy(funded.pk, AssetFactory(currency="USD").pk))
    assert response.status_code == 400
    assert list(response.json()) == ["portfolio"]
    assert not Allocation.objects.exists()


def test_a_buy_settles_in_the_cash_of_its_own_portfolio_only(advisor, funded, api) -> None:
    pension = PortfolioFactory(client=funded)
    body = buy(funded.pk, AssetFactory(currency="USD").pk, portfolio=pension.pk)
    response = api(advisor).post("/api/v1/allocations/", body)
    assert response.status_code == 409
    assert "Insufficient cash" in response.json()["detail"]


def test_a_portfolio_and_a_client_that_disagree_are_refused_with_400(operations, funded, api) -> None:
    body = buy(funded.pk, AssetFactory().pk, kind="transfer_in", portfolio=PortfolioFactory().pk)
    response = api(operations).post("/api/v1/allocations/", body)
    assert response.status_code == 400
    assert list(response.json()) == ["portfolio"]


def test_another_advisors_portfolio_is_refused_like_an_unknown_one(advisor, other_advisor, funded, api) -> None:
    theirs = PortfolioFactory(client=ClientFactory(advisor=other_advisor))
    c = api(advisor)
    body = buy(funded.pk, AssetFactory().pk, kind="transfer_in")
    del body["client"]
    other = c.post("/api/v1/allocations/", {**body, "portfolio": theirs.pk})
    unknown = c.post("/api/v1/allocations/", {**body, "portfolio": 987654321})
    assert other.status_code == unknown.status_code == 400
    assert other.json() == {"portfolio": [f'Invalid pk "{theirs.pk}" - object does not exist.']}
    assert unknown.json() == {"portfolio": ['Invalid pk "987654321" - object does not exist.']}
    mine = AllocationFactory(client=funded)
    moved = c.patch(f"/api/v1/allocations/{mine.pk}/", {"portfolio": theirs.pk})
    assert moved.status_code == 400
    assert list(moved.json()) == ["portfolio"]


def test_a_movement_moves_between_portfolios_of_its_client(advisor, funded, api) -> None:
    mine = AllocationFactory(client=funded)
    pension = PortfolioFactory(client=funded)
    response = api(advisor).patch(f"/api/v1/allocations/{mine.pk}/", {"portfolio": pension.pk})
    assert response.status_code == 200, response.content
    assert response.json()["portfolio"] == pension.pk


def test_a_put_repeating_the_client_keeps_the_movement_in_its_portfolio(advisor, funded, api) -> None:
    pension = PortfolioFactory(client=funded)
    mine = AllocationFactory(portfolio=pension)
    body = buy(funded.pk, mine.asset_id, kind="transfer_in", quantity="3")
    response = api(advisor).put(f"/api/v1/allocations/{mine.pk}/", body)
    assert response.status_code == 200, response.content
    assert (response.json()["portfolio"], response.json()["quantity"]) == (pension.pk, "3.0000000000")


def test_a_closed_portfolio_refuses_a_new_movement_with_409(advisor, funded, api) -> None:
    Portfolio.objects.filter(client=funded).update(closed_on="2026-05-31")
    response = api(advisor).post("/api/v1/allocations/", buy(funded.pk, AssetFactory(currency="USD").pk))
    assert response.status_code == 409
    assert "closed" in response.json()["detail"]


def test_allocations_filter_by_portfolio(operations, api) -> None:
    client = ClientFactory()
    pension = PortfolioFactory(client=client)
    in_pension = AllocationFactory(portfolio=pension)
    AllocationFactory(client=client)
    assert ids(api(operations).get(f"/api/v1/allocations/?portfolio={pension.pk}")) == {in_pension.pk}


def test_allocations_filter_by_another_advisors_portfolio_answers_like_an_unknown_one(
    advisor, other_advisor, api
) -> None:
    theirs = PortfolioFactory(client=ClientFactory(advisor=other_advisor))
    other = api(advisor).get(f"/api/v1/allocations/?portfolio={theirs.pk}")
    unknown = api(advisor).get("/api/v1/allocations/?portfolio=987654321")
    assert other.status_code == unknown.status_code == 400
    assert set(other.json()) == set(unknown.json()) == {"portfolio"}


# --- Unit transfers between portfolios -------------------------------------------------------------------


@pytest.fixture
def holding(advisor: Any) -> tuple[Allocation, Any]:
    """Ten units in a client's main portfolio, and the client's second portfolio."""
    client = ClientFactory(advisor=advisor)
    return AllocationFactory(client=client, quantity=Decimal("10")), PortfolioFactory(client=client, name="Pension")


def units(allocation: Allocation, to: Any, quantity: str = "4", **extra: Any) -> dict[str, Any]:
    return {"to_portfolio": to.pk, "asset": allocation.asset_id, "quantity": quantity, "date": "2026-06-01", **extra}


def test_a_unit_transfer_records_both_legs_and_moves_the_position(advisor, holding, api) -> None:
    allocation, pension = holding
    c = api(advisor)
    url = f"/api/v1/portfolios/{allocation.portfolio_id}/transfer-units/"
    response = c.post(url, units(allocation, pension, price="12.5"))
    assert response.status_code == 201, response.content
    out, into = response.json()["outgoing"], response.json()["incoming"]
    assert (out["kind"], out["portfolio"], out["quantity"], out["price"], out["settlement"]) == (
        "transfer_out",
        allocation.portfolio_id,
        "4.0000000000",
        "12.5000000000",
        None,
    )
    assert (into["kind"], into["portfolio"], into["counterpart"]) == ("transfer_in", pension.pk, out["id"])
    assert position(portfolio_id=allocation.portfolio_id, asset_id=allocation.asset_id) == Decimal("6")
    assert position(portfolio_id=pension.pk, asset_id=allocation.asset_id) == Decimal("4")
    assert ids(c.get(f"/api/v1/allocations/?portfolio={pension.pk}")) == {into["id"]}
    assert not Transaction.objects.filter(kind__in=Transaction.TRANSFERS).exists()


def test_a_unit_transfer_beyond_the_units_held_is_refused_with_409(advisor, holding, api) -> None:
    allocation, pension = holding
    url = f"/api/v1/portfolios/{allocation.portfolio_id}/transfer-units/"
    response = api(advisor).post(url, units(allocation, pension, "10.0000000001"))
    assert response.status_code == 409
    assert "Not enough units" in response.json()["detail"]
    assert Allocation.objects.count() == 1


def test_a_unit_transfer_out_of_a_closed_portfolio_is_refused_with_409(advisor, holding, api) -> None:
    allocation, pension = holding
    Portfolio.objects.filter(pk=allocation.portfolio_id).update(closed_on="2026-05-31")
    url = f"/api/v1/portfolios/{allocation.portfolio_id}/transfer-units/"
    assert api(advisor).post(url, units(allocation, pension)).status_code == 409


@pytest.mark.parametrize(("field", "value"), [("quantity", "0"), ("price", "-1"), ("asset", "987654321")])
def test_invalid_unit_transfer_fields_get_a_400_naming_the_field(field, value, advisor, holding, api) -> None:
    allocation, pension = holding
    url = f"/api/v1/portfolios/{allocation.portfolio_id}/transfer-units/"
    response = api(advisor).post(url, units(allocation, pension, **{field: value}))
    assert response.status_code == 400
    assert list(response.json()) == [field]


def test_another_advisors_portfolio_cannot_transfer_units(other_advisor, holding, api) -> None:
    allocation, pension = holding
    url = f"/api/v1/portfolios/{allocation.portfolio_id}/transfer-units/"
    assert api(other_advisor).post(url, units(allocation, pension)).status_code == 404
    assert Allocation.objects.count() == 1


def test_deleting_one_leg_of_a_unit_transfer_through_the_api_deletes_both(advisor, holding, api) -> None:
    allocation, pension = holding
    c = api(advisor)
    legs = c.post(f"/api/v1/portfolios/{allocation.portfolio_id}/transfer-units/", units(allocation, pension)).json()
    assert c.patch(f"/api/v1/allocations/{legs['incoming']['id']}/", {"quantity": "1"}).status_code == 409
    assert c.delete(f"/api/v1/allocations/{legs['incoming']['id']}/").status_code == 204
    assert ids(c.get("/api/v1/allocations/")) == {allocation.pk}


def test_a_buy_s_taxes_travel_as_a_decimal_string_and_settle_with_it(advisor, funded, api) -> None:
    asset = AssetFactory(currency="USD")
    response = api(advisor).post("/api/v1/allocations/", buy(funded.pk, asset.pk, taxes="2.5"))
    assert response.status_code == 201, response.content
    assert response.json()["taxes"] == "2.5000"
    assert Transaction.objects.get(pk=response.json()["settlement"]).amount == Decimal("1006.5000")
