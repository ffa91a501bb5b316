"""The splits endpoint: every staff role that reads prices reads splits; Operations and superusers write them,
through the services (cash in lieu, staleness, the unit rules); bad input is a 400 naming the field."""

import datetime
from decimal import Decimal
from typing import Any

import pytest

from clients.tests.factories import ClientFactory, main_portfolio
from holdings import services
from holdings.models import Allocation, Split
from holdings.selectors import position
from holdings.tests.factories import AllocationFactory, AssetFactory, SplitFactory

pytestmark = pytest.mark.django_db
URL = "/api/v1/splits/"


@pytest.mark.parametrize("role", ["advisor", "auditor", "operations"])
def test_every_staff_role_that_reads_prices_lists_and_retrieves_splits(role: str, api: Any, request: Any) -> None:
    split = SplitFactory()
    user = request.getfixturevalue(role)
    body = api(user).get(URL).json()
    assert [row["id"] for row in body["results"]] == [split.pk]
    detail = api(user).get(f"{URL}{split.pk}/").json()
    assert (detail["new_units"], detail["old_units"], detail["cash_in_lieu_price"], detail["currency"]) == (
        "2.0000000000",
        "1.0000000000",
        None,
        "USD",
    )


def test_splits_list_query_count_does_not_grow_with_rows(advisor, api, assert_list_queries_constant) -> None:
    assert_list_queries_constant(api(advisor), URL, SplitFactory.create_batch)


@pytest.mark.parametrize("role", ["advisor", "auditor"])
def test_only_operations_and_superusers_record_change_or_delete_splits(role: str, api: Any, request: Any) -> None:
    split = SplitFactory()
    user = request.getfixturevalue(role)
    payload = {"asset": AssetFactory().pk, "date": "2026-03-02", "new_units": "2", "old_units": "1"}
    assert api(user).post(URL, payload, format="json").status_code == 403
    assert api(user).patch(f"{URL}{split.pk}/", {"new_units": "3"}, format="json").status_code == 403
    assert api(user).delete(f"{URL}{split.pk}/").status_code == 403
    assert Split.objects.count() == 1


@pytest.mark.parametrize("role", ["operations", "superuser"])
def test_operations_record_a_reverse_split_that_pays_cash_in_lieu(role: str, api: Any, request: Any) -> None:
    asset = AssetFactory(currency="USD")
    portfolio = main_portfolio(ClientFactory())
    AllocationFactory(portfolio=portfolio, asset=asset, quantity=Decimal("25"), date=datetime.date(2026, 3, 1))
    payload = {
        "asset": asset.pk,
        "date": "2026-03-02",
        "new_units": "1",
        "old_units": "10",
        "cash_in_lieu_price": "40",
    }
    response = api(request.getfixturevalue(role)).post(URL, payload, format="json")
    assert response.status_code == 201, response.content
    (sale,) = Allocation.objects.filter(cash_in_lieu_of_id=response.json()["id"])
    assert (sale.kind, sale.quantity, sale.price, sale.settlement.amount) == ("sell", Decimal("0.5"), 40, 20)
    assert position(portfolio_id=portfolio.pk, asset_id=asset.pk) == 2


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"new_units": "0"}, "new_units"),
        ({"old_units": "-1"}, "old_units"),
        ({"new_units": "1", "old_units": "1"}, "new_units"),
        ({"cash_in_lieu_price": "0"}, "cash_in_lieu_price"),
        ({"new_units": "two"}, "new_units"),
        ({"date": "2026-13-01"}, "date"),
    ],
)
def test_a_bad_ratio_or_price_is_refused_with_400_naming_the_field(
    operations: Any, api: Any, change: dict[str, str], field: str
) -> None:
    payload = {"asset": AssetFactory().pk, "date": "2026-03-02", "new_units": "2", "old_units": "1", **change}
    response = api(operations).post(URL, payload, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not Split.objects.exists()


def test_a_second_split_of_an_asset_on_the_same_day_is_refused_with_400(operations: Any, api: Any) -> None:
    split = SplitFactory()
    payload = {"asset": split.asset_id, "date": split.date.isoformat(), "new_units": "3", "old_units": "1"}
    response = api(operations).post(URL, payload, format="json")
    assert response.status_code == 400
    assert "already has a split on this date" in str(response.json())
    assert Split.objects.count() == 1


def test_deleting_a_split_that_later_sales_need_is_refused_with_409(operations: Any, api: Any) -> None:
    asset = AssetFactory(currency="USD")
    portfolio = main_portfolio(ClientFactory())
    AllocationFactory(portfolio=portfolio, asset=asset, quantity=Decimal("10"), date=datetime.date(2026, 3, 1))
    split = services.split_create(
        actor=operations, asset=asset, date=datetime.date(2026, 3, 2), new_units=Decimal(2), old_units=Decimal(1)
    )
    AllocationFactory(
        portfolio=portfolio, asset=asset, kind="transfer_out", quantity=Decimal("15"), date=datetime.date(2026, 3, 3)
    )
    response = api(operations).delete(f"{URL}{split.pk}/")
    assert response.status_code == 409
    assert "Not enough units" in response.json()["detail"]
    assert api(operations).patch(f"{URL}{split.pk}/", {"new_units": "3"}, format="json").status_code == 200
    assert position(portfolio_id=portfolio.pk, asset_id=asset.pk) == 15


def test_splits_filter_by_asset_and_date(advisor: Any, api: Any) -> None:
    first, second = SplitFactory(date=datetime.date(2026, 1, 5)), SplitFactory(date=datetime.date(2026, 2, 5))
    assert [r["id"] for r in api(advisor).get(f"{URL}?asset={first.asset_id}").json()["results"]] == [first.pk]
    assert [r["id"] for r in api(advisor).get(f"{URL}?date_after=2026-02-01").json()["results"]] == [second.pk]
    search = api(advisor).get(f"{URL}?search={second.asset.ticker}").json()["results"]
    assert [r["id"] for r in search] == [second.pk]
