"""ClientScope: one object per user from which every filter, cache key and per-object check about clients is read."""

from typing import Any

import pytest
from django.apps import apps
from django.db import models

from clients.models import Client
from clients.scope import ClientOwnedQuerySet, ClientScope
from clients.tests.factories import ClientFactory
from portfolio_site.scoping import owner_path

pytestmark = pytest.mark.django_db

ROLES = ["advisor", "other_advisor", "operations", "auditor", "superuser", "nobody"]


@pytest.mark.parametrize("role", ROLES)
def test_the_filter_and_the_per_object_check_agree_for_every_role(role: str, request: Any, advisor: Any) -> None:
    ClientFactory.create_batch(2, advisor=advisor)
    ClientFactory()
    user = request.getfixturevalue(role)
    scope = ClientScope.of(user)

    filtered = set(Client.objects.filter(scope.filter()))
    assert filtered == {client for client in Client.objects.all() if scope.allows(client)}
    assert filtered == set(Client.objects.visible_to(user))


def test_equal_cache_keys_mean_equal_rows_and_different_advisors_get_different_keys(
    advisor: Any, other_advisor: Any, operations: Any, auditor: Any, superuser: Any, nobody: Any
) -> None:
    ClientFactory(advisor=advisor)
    ClientFactory(advisor=other_advisor)
    rows_by_key: dict[str, set[int]] = {}
    for user in (advisor, other_advisor, operations, auditor, superuser, nobody):
        rows = set(Client.objects.visible_to(user).values_list("pk", flat=True))
        assert rows_by_key.setdefault(ClientScope.of(user).cache_key, rows) == rows
    assert len(rows_by_key) == 4  # all, none, and one per advisor


def test_the_scope_is_built_once_per_user_object_and_from_the_cached_grants_after_the_first(
    advisor: Any, django_assert_max_num_queries: Any, django_assert_num_queries: Any
) -> None:
    fresh = type(advisor).objects.get(pk=advisor.pk)
    with django_assert_max_num_queries(3):  # the roles and the permissions, looked up once (accounts.grants)
        first = ClientScope.of(fresh)
        assert ClientScope.of(fresh) is first
        str(Client.objects.visible_to(fresh).query)  # the filter reads the cached scope, not the database

    next_request = type(advisor).objects.get(pk=advisor.pk)
    with django_assert_num_queries(0):
        assert ClientScope.of(next_request) == first


def test_the_filter_follows_the_path_from_a_model_to_its_client(advisor: Any) -> None:
    scope = ClientScope.of(advisor)
    assert scope.filter() == models.Q(advisor=advisor.pk)
    assert scope.filter(through="portfolio__client") == models.Q(portfolio__client__advisor=advisor.pk)


@pytest.mark.parametrize(
    ("role", "names_only_themselves", "may_hold_clients"),
    [
        ("advisor", True, True),
        ("operations", False, True),
        ("auditor", False, True),
        ("superuser", False, True),
        ("nobody", True, False),
    ],
)
def test_only_those_who_see_every_client_may_name_other_staff(
    role: str, names_only_themselves: bool, may_hold_clients: bool, request: Any
) -> None:
    scope = ClientScope.of(request.getfixturevalue(role))
    assert scope.names_only_themselves is names_only_themselves
    assert scope.may_hold_clients is may_hold_clients


def _resolve(model: type[models.Model], path: str) -> type[models.Model]:
    for name in filter(None, path.split("__")):
        model = model._meta.get_field(name).related_model  # type: ignore[assignment]
    return model


def test_every_model_that_points_at_a_client_is_scoped_along_a_path_that_reaches_it() -> None:
    # Not only the models behind today's doors: a selector or a future door reading any of them gets visible_to.
    owned = [model for model in apps.get_models() if owner_path(model) is not None]
    assert len(owned) >= 4
    for model in owned:
        queryset = model._default_manager.all()
        assert isinstance(queryset, ClientOwnedQuerySet), model._meta.label
        assert _resolve(model, queryset.client_path) is Client, model._meta.label
