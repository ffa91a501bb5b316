"""The response cache of clients, assets and prices: served without queries, invalidated by writes, keyed by
the caller's visibility, and optional (Redis down costs speed, never answers).

Tests run inside a transaction that never commits, so cache invalidation (an on-commit hook) is run by
`committed`, as the commit of a real request would.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from unittest import mock

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from accounts.tests.factories import AdvisorFactory, OperationsFactory, SuperuserFactory
from clients.tests.factories import ClientFactory, PortfolioFactory
from holdings.tests.factories import AssetFactory, PriceFactory
from portfolio_site.cache import invalidate_namespace, versioned_get, versioned_set
from portfolio_site.testing import REDIS_DOWN


@dataclass
class Resource:
    """One cached endpoint: who reads and writes it, one of its rows, and payloads to create and change rows."""

    name: str
    user: Any
    row: Any
    create: dict[str, Any]
    change: dict[str, Any]
    changed_field: str

    @property
    def list_url(self) -> str:
        return f"/api/v1/{self.name}/"

    def detail_url(self, pk: Any) -> str:
        return f"/api/v1/{self.name}/{pk}/"


def _clients() -> Resource:
    advisor = AdvisorFactory()
    ClientFactory(advisor=advisor)
    payload = {"name": "Grace Hopper", "email": "grace@example.net", "base_currency": "USD"}
    return Resource("clients", advisor, ClientFactory(advisor=advisor), payload, {"name": "Renamed"}, "name")


def _portfolios() -> Resource:
    advisor = AdvisorFactory()
    client = ClientFactory(advisor=advisor)  # with its Main portfolio
    payload = {"client": client.pk, "name": "Pension", "kind": "retirement"}
    return Resource("portfolios", advisor, PortfolioFactory(client=client), payload, {"name": "Renamed"}, "name")


def _assets() -> Resource:
    AssetFactory()
    payload = {"ticker": "MSFT", "name": "Microsoft", "exchange": "XNAS", "currency": "USD"}
    return Resource("assets", OperationsFactory(), AssetFactory(), payload, {"name": "Renamed"}, "name")


def _prices() -> Resource:
    asset = AssetFactory()
    PriceFactory(asset=asset)
    payload = {"asset": asset.pk, "date": "2025-12-31", "close": "42.5"}
    return Resource("prices", OperationsFactory(), PriceFactory(asset=asset), payload, {"close": "99"}, "close")


RESOURCES = {"clients": _clients, "portfolios": _portfolios, "assets": _assets, "prices": _prices}
# Advisors may not delete clients nor, like them, portfolios.
DELETED_BY_OPERATIONS = {"clients", "portfolios"}


@pytest.fixture(params=sorted(RESOURCES))
def resource(request: pytest.FixtureRequest, db: None) -> Resource:
    return RESOURCES[request.param]()


@pytest.fixture
def committed(django_capture_on_commit_callbacks: Any) -> Callable[[Callable[[], Any]], Any]:
    """Runs a write and then its on-commit hooks, as the commit at the end of a real request does."""

    def run(write: Callable[[], Any]) -> Any:
        with django_capture_on_commit_callbacks(execute=True):
            return write()

    return run


@pytest.fixture
def redis_down(settings: Any) -> None:
    settings.CACHES = REDIS_DOWN


def client_for(user: Any) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def measured_get(client: APIClient, url: str) -> tuple[Any, int]:
    """GET `url`; the response and the number of database queries it cost."""
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    return response, len(queries.captured_queries)


def ok(response: Any, status: int = 200) -> Any:
    assert response.status_code == status, response.content
    return response.json() if response.content else None


def ids(page: dict[str, Any]) -> set[int]:
    return {row["id"] for row in page["results"]}


# --- Served from the cache ---------------------------------------------------------------------------------


def test_second_identical_request_is_served_from_the_cache_without_queries(resource: Resource) -> None:
    client = client_for(resource.user)
    for url in (resource.list_url, resource.detail_url(resource.row.pk), f"{resource.list_url}?page_size=1"):
        first, first_queries = measured_get(client, url)
        second, second_queries = measured_get(client, url)
        assert first_queries > 0
        assert second_queries == 0, url
        assert ok(first) == ok(second)


def test_the_query_string_is_part_of_the_cache_key(resource: Resource) -> None:
    client = client_for(resource.user)
    assert ok(client.get(resource.list_url))["count"] == 2
    assert len(ok(client.get(f"{resource.list_url}?page_size=1"))["results"]) == 1
    assert len(ok(client.get(f"{resource.list_url}?page_size=2"))["results"]) == 2


# --- Invalidated by writes ---------------------------------------------------------------------------------


def test_creating_through_the_api_shows_in_the_cached_list(resource: Resource, committed: Any) -> None:
    client = client_for(resource.user)
    before = ok(client.get(resource.list_url))
    created = committed(lambda: ok(client.post(resource.list_url, resource.create), 201))
    after = ok(client.get(resource.list_url))
    assert after["count"] == before["count"] + 1
    assert created["id"] in ids(after)


def test_updating_through_the_api_shows_in_the_cached_list_and_detail(resource: Resource, committed: Any) -> None:
    client = client_for(resource.user)
    url = resource.detail_url(resource.row.pk)
    ok(client.get(resource.list_url))
    old = ok(client.get(url))
    changed = committed(lambda: ok(client.patch(url, resource.change)))
    assert changed[resource.changed_field] != old[resource.changed_field]
    assert ok(client.get(url)) == changed
    listed = {row["id"]: row for row in ok(client.get(resource.list_url))["results"]}
    assert listed[resource.row.pk][resource.changed_field] == changed[resource.changed_field]


def test_deleting_through_the_api_shows_in_the_cached_list_and_detail(resource: Resource, committed: Any) -> None:
    deleter = client_for(OperationsFactory()) if resource.name in DELETED_BY_OPERATIONS else client_for(resource.user)
    reader = client_for(resource.user)
    url = resource.detail_url(resource.row.pk)
    assert resource.row.pk in ids(ok(reader.get(resource.list_url)))
    ok(reader.get(url))
    committed(lambda: ok(deleter.delete(url), 204))
    assert reader.get(url).status_code == 404
    assert resource.row.pk not in ids(ok(reader.get(resource.list_url)))


@pytest.mark.django_db
def test_changing_an_assets_currency_shows_in_the_cached_prices(operations: Any, committed: Any) -> None:
    price = PriceFactory(asset=AssetFactory(currency="USD"))
    client = client_for(operations)
    assert ok(client.get(f"/api/v1/prices/{price.pk}/"))["currency"] == "USD"
    committed(lambda: ok(client.patch(f"/api/v1/assets/{price.asset_id}/", {"currency": "EUR"})))
    assert ok(client.get(f"/api/v1/prices/{price.pk}/"))["currency"] == "EUR"
    assert ok(client.get("/api/v1/prices/"))["results"][0]["currency"] == "EUR"


@pytest.mark.django_db
def test_deleting_an_asset_removes_its_prices_from_the_cached_list(operations: Any, committed: Any) -> None:
    price = PriceFactory()
    client = client_for(operations)
    assert ok(client.get("/api/v1/prices/"))["count"] == 1
    committed(lambda: ok(client.delete(f"/api/v1/assets/{price.asset_id}/"), 204))
    assert ok(client.get("/api/v1/prices/"))["count"] == 0
    assert client.get(f"/api/v1/prices/{price.pk}/").status_code == 404


@pytest.mark.django_db
def test_reassigning_a_client_moves_it_between_the_advisors_cached_lists(operations: Any, committed: Any) -> None:
    client = ClientFactory()
    old, new = client_for(client.advisor), AdvisorFactory()
    assert ids(ok(old.get("/api/v1/clients/"))) == {client.pk}
    assert ids(ok(client_for(new).get("/api/v1/clients/"))) == set()
    committed(lambda: ok(client_for(operations).patch(f"/api/v1/clients/{client.pk}/", {"advisor": new.pk})))
    assert ids(ok(old.get("/api/v1/clients/"))) == set()
    assert old.get(f"/api/v1/clients/{client.pk}/").status_code == 404
    assert ids(ok(client_for(new).get("/api/v1/clients/"))) == {client.pk}


@pytest.mark.django_db
def test_opening_and_renaming_a_portfolio_shows_in_the_cached_client_detail(committed: Any) -> None:
    client = ClientFactory()
    reader = client_for(client.advisor)
    url = f"/api/v1/clients/{client.pk}/"
    assert [p["name"] for p in ok(reader.get(url))["portfolios"]] == ["Main"]
    created = committed(lambda: ok(reader.post("/api/v1/portfolios/", {"client": client.pk, "name": "Pension"}), 201))
    assert [p["name"] for p in ok(reader.get(url))["portfolios"]] == ["Main", "Pension"]
    committed(lambda: ok(reader.patch(f"/api/v1/portfolios/{created['id']}/", {"name": "ISA"})))
    assert [p["name"] for p in ok(reader.get(url))["portfolios"]] == ["ISA", "Main"]


@pytest.mark.django_db
def test_renaming_a_client_shows_in_its_cached_portfolios(committed: Any) -> None:
    client = ClientFactory(name="Old Name")
    reader = client_for(client.advisor)
    assert ok(reader.get("/api/v1/portfolios/"))["results"][0]["client_name"] == "Old Name"
    committed(lambda: ok(reader.patch(f"/api/v1/clients/{client.pk}/", {"name": "New Name"})))
    assert ok(reader.get("/api/v1/portfolios/"))["results"][0]["client_name"] == "New Name"


@pytest.mark.django_db
def test_an_advisor_never_receives_another_advisors_cached_portfolio_list() -> None:
    mine, theirs = ClientFactory(), ClientFactory()
    me, them = client_for(mine.advisor), client_for(theirs.advisor)
    assert {row["client"] for row in ok(me.get("/api/v1/portfolios/"))["results"]} == {mine.pk}
    assert {row["client"] for row in ok(them.get("/api/v1/portfolios/"))["results"]} == {theirs.pk}


@pytest.mark.django_db
def test_renaming_an_advisor_shows_in_the_cached_client_list(committed: Any) -> None:
    client = ClientFactory(advisor__full_name="Old Name")
    reader = client_for(client.advisor)
    assert ok(reader.get("/api/v1/clients/"))["results"][0]["advisor_name"] == "Old Name"
    admin = client_for(SuperuserFactory())
    committed(lambda: ok(admin.patch(f"/api/v1/users/{client.advisor_id}/", {"full_name": "New Name"})))
    assert ok(reader.get("/api/v1/clients/"))["results"][0]["advisor_name"] == "New Name"


# --- Keyed by visibility -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_advisor_never_receives_another_advisors_cached_client_list() -> None:
    mine, theirs = ClientFactory(), ClientFactory()
    me, them = client_for(mine.advisor), client_for(theirs.advisor)
    assert ids(ok(me.get("/api/v1/clients/"))) == {mine.pk}
    assert ids(ok(them.get("/api/v1/clients/"))) == {theirs.pk}
    assert ids(ok(me.get("/api/v1/clients/"))) == {mine.pk}


@pytest.mark.django_db
def test_an_advisor_never_receives_another_advisors_cached_client_detail() -> None:
    mine, theirs = ClientFactory(), ClientFactory()
    url = f"/api/v1/clients/{mine.pk}/"
    assert ok(client_for(mine.advisor).get(url))["id"] == mine.pk
    assert client_for(theirs.advisor).get(url).status_code == 404


@pytest.mark.django_db
def test_an_operations_users_cached_client_list_is_not_served_to_an_advisor(operations: Any) -> None:
    mine, theirs = ClientFactory(), ClientFactory()
    assert ids(ok(client_for(operations).get("/api/v1/clients/"))) == {mine.pk, theirs.pk}
    assert ids(ok(client_for(mine.advisor).get("/api/v1/clients/"))) == {mine.pk}
    assert client_for(mine.advisor).get(f"/api/v1/clients/{theirs.pk}/").status_code == 404


@pytest.mark.django_db
def test_an_advisors_cached_client_list_is_not_served_to_operations(operations: Any) -> None:
    mine, theirs = ClientFactory(), ClientFactory()
    assert ids(ok(client_for(mine.advisor).get("/api/v1/clients/"))) == {mine.pk}
    assert ids(ok(client_for(operations).get("/api/v1/clients/"))) == {mine.pk, theirs.pk}


@pytest.mark.django_db
def test_a_cached_response_is_never_served_to_a_caller_without_the_view_permission(
    operations: Any, nobody: Any
) -> None:
    client = ClientFactory()
    asset = AssetFactory()
    reader = client_for(operations)
    for url in ("/api/v1/clients/", f"/api/v1/clients/{client.pk}/", "/api/v1/assets/", f"/api/v1/assets/{asset.pk}/"):
        ok(reader.get(url))
        assert client_for(nobody).get(url).status_code == 403
        assert APIClient().get(url).status_code == 401


# --- Redis down --------------------------------------------------------------------------------------------


def test_with_redis_unreachable_reads_answer_200_from_the_database(resource: Resource, redis_down: None) -> None:
    client = client_for(resource.user)
    for url in (resource.list_url, resource.detail_url(resource.row.pk)):
        first, _ = measured_get(client, url)
        second, second_queries = measured_get(client, url)
        assert second_queries > 0  # every read is a miss
        assert ok(first) == ok(second)
    assert ok(client.get(resource.list_url))["count"] == 2


def test_with_redis_unreachable_writes_work_and_reads_show_them(
    resource: Resource, redis_down: None, committed: Any
) -> None:
    client = client_for(resource.user)
    created = committed(lambda: ok(client.post(resource.list_url, resource.create), 201))
    url = resource.detail_url(created["id"])
    assert ok(client.get(url)) == created
    changed = committed(lambda: ok(client.patch(url, resource.change)))
    assert ok(client.get(url))[resource.changed_field] == changed[resource.changed_field]
    deleter = client_for(OperationsFactory()) if resource.name in DELETED_BY_OPERATIONS else client
    committed(lambda: ok(deleter.delete(url), 204))
    assert client.get(url).status_code == 404
    assert ok(client.get(resource.list_url))["count"] == 2


@pytest.mark.django_db
def test_with_redis_unreachable_the_ledger_still_posts_and_reports_balances(redis_down: None) -> None:
    client = ClientFactory(base_currency="EUR")
    advisor = client_for(client.advisor)
    payload = {"client": client.pk, "kind": "deposit", "amount": "10.5", "currency": "EUR", "date": "2026-01-02"}
    ok(advisor.post("/api/v1/transactions/", payload), 201)
    balances = ok(advisor.get(f"/api/v1/clients/{client.pk}/balances/"))
    assert balances["balances"] == [
        {"currency": "EUR", "amount": "10.5000", "on_hold": "0.0000", "available": "10.5000"}
    ]


def test_a_versioned_value_and_its_namespaces_versions_are_read_in_one_round_trip() -> None:
    _, versions = versioned_get("report:1", ["fx-rates", "assets"])
    versioned_set("report:1", b"{}", versions, timeout=60)
    stored = cache.get_many(["ns-version:fx-rates", "ns-version:assets", "report:1"])
    with mock.patch("portfolio_site.cache.cache") as spy:
        spy.get_many.return_value = stored
        assert versioned_get("report:1", ["fx-rates", "assets"]) == (b"{}", versions)
    assert spy.mock_calls == [mock.call.get_many(["ns-version:fx-rates", "ns-version:assets", "report:1"])]


@pytest.mark.django_db
def test_a_versioned_value_is_a_miss_once_any_of_its_namespaces_moves_on(committed: Any) -> None:
    _, before = versioned_get("report:2", ["fx-rates", "assets"])
    versioned_set("report:2", b"old", before, timeout=60)
    committed(lambda: invalidate_namespace("assets"))
    found, after = versioned_get("report:2", ["fx-rates", "assets"])
    assert found is None
    assert after[0] == before[0]
    assert after[1] != before[1]


@pytest.mark.django_db
def test_a_value_computed_while_a_write_commits_is_never_served_after_it(committed: Any) -> None:
    """The reader read the versions, then the data; a write bumped a namespace in between: what the reader stores
    carries the versions it read, which are no one's any more."""
    _, read_as_of = versioned_get("report:3", ["fx-rates"])
    committed(lambda: invalidate_namespace("fx-rates"))
    versioned_set("report:3", b"computed from the rows before the write", read_as_of, timeout=60)
    assert versioned_get("report:3", ["fx-rates"])[0] is None
