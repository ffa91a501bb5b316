"""Every door onto a client-owned model shows an advisor their own clients' rows and nothing of anyone else's.

The doors are found, not listed: every viewset of the API router, every API view nested under one of its routes
(`/clients/<pk>/balances/`), every admin registration. A model is client-owned when its foreign keys lead to the
client (`portfolio_site.scoping.owner_path`). One role (an advisor) against another advisor's rows: lists, rows,
views under an object, every filter of a list set to the other's values, searches for the other's client, every
ordering, the cache warmed by the other first, admin search, filters and ordering, and the change history. The rest of
the authorization matrix: test_api_matrix.py (every API operation by every role), test_role_matrix.py (every admin
page and action by every role).

Budget: about 45 s on SQLite (one test per door and kind of question, each with its own two rows).
"""

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib import admin
from django.db import models
from django.urls import URLPattern, URLResolver, reverse
from django.utils import timezone
from rest_framework.viewsets import ViewSetMixin

from clients.models import Client, Portfolio
from clients.tests.factories import ClientFactory, PortfolioFactory
from holdings.models import Allocation, Dividend, UnitHold
from holdings.tests.factories import AllocationFactory, AssetFactory, DividendFactory, UnitHoldFactory
from holdings.tests.test_dashboard import _book
from ledger.models import CashHold, Transaction
from ledger.tests.factories import CashHoldFactory, TransactionFactory
from portfolio_site.admin_utils import ScopedAdminMixin
from portfolio_site.api.filters import filter_parameters
from portfolio_site.api.viewsets import ScopedViewSetMixin
from portfolio_site.changelog.selectors import tracked_models
from portfolio_site.scoping import owner_path
from portfolio_site.testing import admin_messages, changelist_ids
from portfolio_site.urls import api_v1, router
from trading.models import BrokerAccount, Fill, ModelAssignment, Order, RebalanceProposal
from trading.tests.factories import (
    FillFactory,
    ModelAssignmentFactory,
    OrderFactory,
    RebalanceProposalFactory,
    paper_account,
)

pytestmark = pytest.mark.django_db

# How to make a row of each client-owned model for a given client. A new client-owned model behind a door fails
# `test_every_client_owned_model_behind_a_door_can_be_made_for_a_client` until it is added here, and so is tested.
ROW_FOR_CLIENT: dict[type[models.Model], Callable[[Client], models.Model]] = {
    Client: lambda client: client,
    Portfolio: lambda client: PortfolioFactory(client=client),
    Transaction: lambda client: TransactionFactory(client=client),
    Allocation: lambda client: AllocationFactory(client=client),
    Dividend: lambda client: DividendFactory(client=client),
    CashHold: lambda client: CashHoldFactory(client=client),
    UnitHold: lambda client: UnitHoldFactory(client=client),
    Order: lambda client: OrderFactory(client=client),
    Fill: lambda client: FillFactory(order__client=client),
    BrokerAccount: lambda client: paper_account(PortfolioFactory(client=client)),
    ModelAssignment: lambda client: ModelAssignmentFactory(portfolio=PortfolioFactory(client=client)),
    RebalanceProposal: lambda client: RebalanceProposalFactory(portfolio=PortfolioFactory(client=client)),
}
# Client-owned models with an admin door only: holds are written by their holder's services, read in the admin.
ADMIN_ONLY = {CashHold, UnitHold}


def _viewsets() -> list[tuple[str, type[Any]]]:
    return [(prefix, viewset) for prefix, viewset, _ in router.registry]


def _model_of(view: type[Any]) -> type[models.Model] | None:
    queryset = getattr(view, "queryset", None)
    return queryset.model if queryset is not None else None


def _api_doors() -> list[tuple[str, type[Any], type[models.Model]]]:
    return [(prefix, view, model) for prefix, view in _viewsets() if (model := _model_of(view)) is not None]


def _owned_api_doors() -> list[Any]:
    owned = [(prefix, model) for prefix, _, model in _api_doors() if owner_path(model) is not None]
    return [pytest.param(prefix, model, id=prefix) for prefix, model in owned]


def _admin_doors() -> list[tuple[type[models.Model], Any]]:
    return list(admin.site._registry.items())


def _owned_admin_models() -> list[Any]:
    return [pytest.param(model, id=model._meta.label) for model, _ in _admin_doors() if owner_path(model) is not None]


def _patterns(patterns: list[URLPattern | URLResolver]) -> Iterator[tuple[str, URLPattern]]:
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from ((str(pattern.pattern) + route, inner) for route, inner in _patterns(pattern.url_patterns))
        else:
            yield str(pattern.pattern), pattern


def _nested_views() -> list[Any]:
    """The API views outside the router whose route names an object of a router prefix's model by `pk`
    (`portfolios/<int:pk>/transfer-cash/`): the object is looked up by that model's visibility."""
    models_by_prefix = {prefix: model for prefix, _, model in _api_doors()}
    found = []
    for route, pattern in _patterns(api_v1):
        view = getattr(pattern.callback, "cls", None)
        if view is None or issubclass(view, ViewSetMixin) or "<int:pk>" not in route:
            continue
        model = models_by_prefix.get(route.split("/<int:pk>")[0])
        if model is not None and owner_path(model) is not None:
            found.append(pytest.param(pattern.name, view, model, id=pattern.name))
    return found


def _own_and_other_row(model: type[models.Model], advisor: Any, other_advisor: Any) -> tuple[Any, Any]:
    make = ROW_FOR_CLIENT[model]
    return make(ClientFactory(advisor=advisor)), make(ClientFactory(advisor=other_advisor))


def test_the_walk_finds_the_client_owned_doors_there_are() -> None:
    # Guards the walk itself: were it to find nothing, every test below would pass by proving nothing.
    assert {model for _, _, model in _api_doors() if owner_path(model) is not None} >= set(ROW_FOR_CLIENT) - ADMIN_ONLY
    assert {model for model, _ in _admin_doors() if owner_path(model) is not None} >= set(ROW_FOR_CLIENT)
    assert {param.values[0] for param in _nested_views()} >= {"client-balances", "portfolio-balances"}


def test_every_client_owned_model_behind_a_door_can_be_made_for_a_client() -> None:
    owned = {model for _, _, model in _api_doors()} | {model for model, _ in _admin_doors()}
    owned = {model for model in owned if owner_path(model) is not None}
    assert owned <= set(ROW_FOR_CLIENT), "add a row maker to ROW_FOR_CLIENT for each new client-owned model"


def test_only_the_scoped_base_serves_client_owned_models() -> None:
    # A viewset or admin outside the scoped base would not be checked at startup: none may serve client rows.
    for prefix, view, model in _api_doors():
        assert owner_path(model) is None or issubclass(view, ScopedViewSetMixin), prefix
    for model, model_admin in _admin_doors():
        assert owner_path(model) is None or isinstance(model_admin, ScopedAdminMixin), model._meta.label


@pytest.mark.parametrize(("prefix", "model"), _owned_api_doors())
def test_api_lists_an_advisor_only_their_own_clients_rows_and_hides_others(
    prefix: str, model: type[models.Model], api: Callable[[Any], Any], advisor: Any, other_advisor: Any
) -> None:
    own, other = _own_and_other_row(model, advisor, other_advisor)
    as_advisor = api(advisor)

    listed = as_advisor.get(f"/api/v1/{prefix}/", {"page_size": 100})
    assert listed.status_code == 200
    ids = {row["id"] for row in listed.json()["results"]}
    assert own.pk in ids
    assert other.pk not in ids
    assert as_advisor.get(f"/api/v1/{prefix}/{own.pk}/").status_code == 200
    assert as_advisor.get(f"/api/v1/{prefix}/{other.pk}/").status_code == 404


@pytest.mark.parametrize(("name", "view", "model"), _nested_views())
def test_api_views_under_an_object_answer_404_for_another_advisors_object(
    name: str,
    view: type[Any],
    model: type[models.Model],
    api: Callable[[Any], Any],
    advisor: Any,
    other_advisor: Any,
) -> None:
    own, other = _own_and_other_row(model, advisor, other_advisor)
    as_advisor = api(advisor)
    # The object is looked up before the body is read, so an empty body is enough to tell 404 from the rest.
    call = as_advisor.get if hasattr(view, "get") else as_advisor.post
    # A view under an object and an asset (a position's performance) gets an asset anyone may see.
    handler = getattr(view, "get", None) or view.post
    extra = {"asset_id": AssetFactory().pk} if "asset_id" in inspect.signature(handler).parameters else {}

    assert call(reverse(name, kwargs={"pk": other.pk, **extra})).status_code == 404
    assert call(reverse(name, kwargs={"pk": own.pk, **extra})).status_code != 404


@pytest.mark.parametrize("model", _owned_admin_models())
def test_admin_lists_an_advisor_only_their_own_clients_rows_and_hides_others(
    model: type[models.Model], client: Any, advisor: Any, other_advisor: Any
) -> None:
    own, other = _own_and_other_row(model, advisor, other_advisor)
    client.force_login(advisor)
    opts = model._meta

    listed = client.get(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
    assert listed.status_code == 200
    assert own.pk in changelist_ids(listed)
    assert other.pk not in changelist_ids(listed)
    change = f"admin:{opts.app_label}_{opts.model_name}_change"
    assert client.get(reverse(change, args=[own.pk])).status_code == 200
    hidden = client.get(reverse(change, args=[other.pk]))
    # Django's admin answers an object outside get_queryset() as it answers a missing one.
    assert hidden.status_code == 302
    assert any(f"ID “{other.pk}” doesn" in message for message in admin_messages(hidden))


def _owner_of(row: models.Model) -> Client:
    path = owner_path(type(row))
    owner: Any = row
    for step in (path or "").split("__") if path else ():
        owner = getattr(owner, step)
    assert isinstance(owner, Client)
    return owner


def _leaky_queries(view: type[Any], other: models.Model) -> list[dict[str, Any]]:
    """Queries that name another advisor's row: each filter given the value the row (or its client) has for it, a
    search for its client's name and e-mail, and each ordering, both ways."""
    owner = _owner_of(other)
    queries: list[dict[str, Any]] = [{"search": owner.name}, {"search": owner.email}]
    filterset_class = getattr(view, "filterset_class", None)
    names = filter_parameters(filterset_class) if filterset_class is not None else frozenset()
    for name in sorted(names or ()):
        for source in (other, owner):
            value = getattr(source, f"{name}_id", None)
            if value is None and name in {field.name for field in source._meta.concrete_fields}:
                value = getattr(source, name)
            if value is not None and not isinstance(value, models.Model):
                queries.append({name: value.pk if hasattr(value, "pk") else value})
                break
    for name in ("client", "portfolio", "order"):  # the owner's ids under the names lists filter them by
        if name in (names or ()) and not any(name in query for query in queries):
            target = owner if name == "client" else getattr(other, name, None)
            if target is not None:
                queries.append({name: target.pk})
    queries += [{"ordering": f"{sign}{name}"} for name in getattr(view, "ordering_fields", None) or () for sign in "-+"]
    return queries


@pytest.mark.parametrize(("prefix", "model"), _owned_api_doors())
def test_api_lists_never_show_another_advisors_rows_however_filtered_searched_or_ordered(
    prefix: str, model: type[models.Model], api: Callable[[Any], Any], advisor: Any, other_advisor: Any
) -> None:
    _, other = _own_and_other_row(model, advisor, other_advisor)
    view = dict(_viewsets())[prefix]
    as_advisor = api(advisor)

    queries = _leaky_queries(view, other)
    assert any(set(query) - {"search", "ordering"} for query in queries) or not getattr(view, "filterset_class", None)
    for query in queries:
        listed = as_advisor.get(f"/api/v1/{prefix}/", {**query, "page_size": 100})
        # A filter naming a row the advisor may not see is refused as a choice that does not exist, or finds nothing.
        assert listed.status_code in (200, 400), (query, listed.content)
        if listed.status_code == 200:
            assert other.pk not in {row["id"] for row in listed.json()["results"]}, query


@pytest.mark.parametrize(("prefix", "model"), _owned_api_doors())
def test_a_list_or_row_cached_for_one_advisor_is_never_served_to_another(
    prefix: str, model: type[models.Model], api: Callable[[Any], Any], advisor: Any, other_advisor: Any
) -> None:
    own, other = _own_and_other_row(model, advisor, other_advisor)
    as_other, as_advisor = api(other_advisor), api(advisor)
    # The other advisor reads first (warming whatever cache there is), then the advisor asks the very same URLs.
    for url in (f"/api/v1/{prefix}/?page_size=100", f"/api/v1/{prefix}/{other.pk}/"):
        assert as_other.get(url).status_code == 200, url
    listed = as_advisor.get(f"/api/v1/{prefix}/?page_size=100")
    assert {row["id"] for row in listed.json()["results"]} == {own.pk} | _also_visible(model, advisor)
    assert as_advisor.get(f"/api/v1/{prefix}/{other.pk}/").status_code == 404


def _also_visible(model: type[models.Model], advisor: Any) -> set[int]:
    # Rows the advisor owns that the row makers created on the way (an order's fill makes an order too).
    return set(model.objects.visible_to(advisor).values_list("pk", flat=True))  # type: ignore[attr-defined]


@pytest.mark.parametrize(("name", "view", "model"), _nested_views())
def test_a_valuation_or_report_cached_for_one_advisor_is_never_served_to_another(
    name: str,
    view: type[Any],
    model: type[models.Model],
    api: Callable[[Any], Any],
    advisor: Any,
    other_advisor: Any,
) -> None:
    if not hasattr(view, "get"):
        pytest.skip(f"{name} is a write (POST): nothing to cache")
    _, other = _own_and_other_row(model, advisor, other_advisor)
    handler = view.get
    extra = {"asset_id": AssetFactory().pk} if "asset_id" in inspect.signature(handler).parameters else {}
    url = reverse(name, kwargs={"pk": other.pk, **extra})

    warmed = api(other_advisor).get(url)
    assert warmed.status_code in (200, 400), warmed.content  # 400: a report that needs a query (a date range)
    assert api(advisor).get(url).status_code == 404


def test_the_drift_report_cached_for_one_advisor_shows_another_none_of_their_portfolios(
    api: Callable[[Any], Any], advisor: Any, other_advisor: Any
) -> None:
    own = ModelAssignmentFactory(portfolio=PortfolioFactory(client=ClientFactory(advisor=advisor)))
    other = ModelAssignmentFactory(portfolio=PortfolioFactory(client=ClientFactory(advisor=other_advisor)))

    warmed = api(other_advisor).get("/api/v1/drift/", {"page_size": 100})
    assert warmed.status_code == 200
    assert other.portfolio_id in _portfolio_ids(warmed.json()["results"])
    shown = api(advisor).get("/api/v1/drift/", {"page_size": 100})
    assert _portfolio_ids(shown.json()["results"]) == {own.portfolio_id}
    leaky = ({"portfolio": other.portfolio_id}, {"search": other.portfolio.client.name}, {"ordering": "-portfolio"})
    for query in leaky:
        found = api(advisor).get("/api/v1/drift/", {**query, "page_size": 100})
        assert found.status_code in (200, 400), query
        if found.status_code == 200:
            assert other.portfolio_id not in _portfolio_ids(found.json()["results"]), query


def _portfolio_ids(rows: list[dict[str, Any]]) -> set[int]:
    return {row["portfolio"] if isinstance(row["portfolio"], int) else row["portfolio"]["id"] for row in rows}


@pytest.mark.parametrize("model", _owned_admin_models())
def test_admin_lists_never_show_another_advisors_rows_however_searched_filtered_or_ordered(
    model: type[models.Model], client: Any, advisor: Any, other_advisor: Any
) -> None:
    own, other = _own_and_other_row(model, advisor, other_advisor)
    owner = _owner_of(other)
    client.force_login(advisor)
    opts = model._meta
    changelist = reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")
    path = owner_path(model)
    queries: list[dict[str, Any]] = [{"q": owner.name}, {"q": owner.email}, {"q": str(other.pk)}]
    queries.append({f"{path}__id__exact" if path else "id__exact": owner.pk})
    plain = client.get(changelist)
    assert own.pk in changelist_ids(plain)
    columns = len(admin.site._registry[model].get_list_display(plain.wsgi_request))
    queries += [{"o": f"{sign}{index}"} for index in range(1, columns + 1) for sign in ("", "-")]

    for query in queries:
        listed = client.get(changelist, query)
        # A filter Django does not allow answers with the list's error page (a redirect to ?e=1), showing nothing.
        assert listed.status_code in (200, 302), query
        if listed.status_code == 200:
            assert other.pk not in changelist_ids(listed), query


@pytest.mark.parametrize(
    "model", [param for param in _owned_admin_models() if param.values[0] in set(tracked_models())]
)
def test_the_change_history_never_shows_an_advisor_another_advisors_rows_changes(
    model: type[models.Model], client: Any, advisor: Any, other_advisor: Any
) -> None:
    own, other = _own_and_other_row(model, advisor, other_advisor)
    owner = _owner_of(other)
    client.force_login(advisor)
    labels = {model._meta.label, model._meta.label_lower}

    def shown(query: dict[str, Any]) -> set[Any]:
        response = client.get("/admin/changelog/change/", query)
        assert response.status_code == 200, query
        return {entry.object_id for entry in response.context["entries"] if entry.model in labels}

    assert own.pk in shown({}) or str(own.pk) in shown({}), "the history shows the advisor's own row's change"
    for query in ({}, {"client": owner.pk}, {"user": other_advisor.email}, {"model": model._meta.label_lower}):
        assert not {other.pk, str(other.pk)} & shown(query), query
    # The object's own history page of another advisor's row answers as for a missing object.
    history = client.get(reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_history", args=[other.pk]))
    assert history.status_code == 302


def test_the_dashboard_an_advisor_sees_after_another_advisor_loaded_theirs_is_their_own(
    client: Any, advisor: Any, other_advisor: Any, settings: Any
) -> None:
    settings.REPORTING_CURRENCY = "EUR"
    _book(advisor, other_advisor, timezone.localdate())  # "Own Client" of the advisor, "Other Client" of the other
    client.force_login(other_advisor)
    assert "Other Client" in client.get(reverse("admin:index")).content.decode()  # warms whatever is cached
    client.logout()

    client.force_login(advisor)
    page = client.get(reverse("admin:index")).content.decode()

    assert "Own Client" in page
    assert "Other Client" not in page
