"""Every door onto a client-owned model shows an advisor their own clients' rows and nothing of anyone else's.

The doors are found, not listed: every viewset of the API router, every API view nested under one of its routes
(`/clients/<pk>/balances/`), every admin registration. A model is client-owned when its foreign keys lead to the
client (`portfolio_site.scoping.owner_path`). This is the seed of the authorization matrix: one role (an advisor)
against one other advisor's rows, for reads.
"""

import inspect
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib import admin
from django.db import models
from django.urls import URLPattern, URLResolver, reverse
from rest_framework.viewsets import ViewSetMixin

from clients.models import Client, Portfolio
from clients.tests.factories import ClientFactory, PortfolioFactory
from holdings.models import Allocation, Dividend, UnitHold
from holdings.tests.factories import AllocationFactory, AssetFactory, DividendFactory, UnitHoldFactory
from ledger.models import CashHold, Transaction
from ledger.tests.factories import CashHoldFactory, TransactionFactory
from portfolio_site.admin_utils import ScopedAdminMixin
from portfolio_site.api.viewsets import ScopedViewSetMixin
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
