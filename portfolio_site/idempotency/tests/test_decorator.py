"""The decorator and the mixin on views of their own (the API's endpoints are tested in ledger and holdings)."""

from typing import Any

import pytest
from rest_framework import permissions, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.test import APIRequestFactory, force_authenticate

from accounts.tests.factories import UserFactory
from portfolio_site.idempotency.api import IdempotentCreateMixin, idempotent, is_idempotent
from portfolio_site.idempotency.models import IdempotencyKey

pytestmark = pytest.mark.django_db

calls: list[str] = []


class CountingViewSet(IdempotentCreateMixin, viewsets.ViewSet):
    permission_classes = [permissions.IsAuthenticated]

    def create(self, request: Request) -> Response:
        calls.append("create")
        return Response({"call": len(calls)}, status=201)


class RefiningViewSet(CountingViewSet):
    """Its own `create`, calling the (already idempotent) one it overrides."""

    def create(self, request: Request) -> Response:
        calls.append("refined")
        return super().create(request)


class FailingViewSet(IdempotentCreateMixin, viewsets.ViewSet):
    permission_classes = [permissions.IsAuthenticated]

    def create(self, request: Request) -> Response:
        UserFactory()  # a write, which the failure must take back with the key
        raise RuntimeError("unexpected")


def send(viewset: Any, user: Any, body: dict[str, Any], key: str = "k-1") -> Any:
    request = APIRequestFactory().post("/things/", body, format="json", HTTP_IDEMPOTENCY_KEY=key)
    force_authenticate(request, user)
    return viewset.as_view({"post": "create"})(request)


@pytest.fixture(autouse=True)
def _no_calls() -> None:
    calls.clear()


def test_the_mixin_makes_a_viewsets_own_create_idempotent_and_its_subclasses_too() -> None:
    assert is_idempotent(CountingViewSet.create)
    assert is_idempotent(RefiningViewSet.create)
    assert idempotent(CountingViewSet.create) is CountingViewSet.create  # never wrapped twice


def test_a_create_calling_an_idempotent_create_claims_the_key_once() -> None:
    user = UserFactory()
    first = send(RefiningViewSet, user, {"a": 1})
    again = send(RefiningViewSet, user, {"a": 1})

    assert (first.status_code, first.data) == (201, {"call": 2})
    assert (again.status_code, again.data, again["Idempotent-Replayed"]) == (201, {"call": 2}, "true")
    assert calls == ["refined", "create"]
    assert IdempotencyKey.objects.count() == 1


def test_an_unexpected_error_keeps_no_key_and_takes_back_the_views_writes() -> None:
    user = UserFactory()
    users = type(user).objects.count()
    with pytest.raises(RuntimeError):
        send(FailingViewSet, user, {"a": 1})
    assert not IdempotencyKey.objects.exists()
    assert type(user).objects.count() == users
