"""The API's exception handler: domain and database errors become DRF's shapes and statuses, never a 500."""

import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.db.models import ProtectedError
from django.http import Http404
from rest_framework.test import APIClient

from clients.tests.factories import ClientFactory
from holdings.models import Asset
from holdings.tests.factories import AssetFactory, PriceFactory
from ledger.tests.factories import TransactionFactory
from portfolio_site.api.exceptions import exception_handler
from portfolio_site.errors import ConflictError

SQL_LEAKS = ("Traceback", "INSERT", "UPDATE ", "DELETE FROM", "UNIQUE constraint", "duplicate key", "holdings_asset")


def assert_clean_body(response: Any) -> None:
    body = response.content.decode()
    for leak in SQL_LEAKS:
        assert leak not in body, f"{leak!r} in {body}"


# --- Through the API ---------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_integrity_error_from_a_race_becomes_409_with_a_detail_and_no_sql(
    api: Any, operations: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another writer inserted the same asset between our validation and our INSERT: the database refuses it."""
    AssetFactory(ticker="AAPL", exchange="XNAS")
    monkeypatch.setattr(Asset, "validate_constraints", lambda self, exclude=None: None)
    response = api(operations).post(
        "/api/v1/assets/", {"ticker": "AAPL", "exchange": "XNAS", "name": "Apple", "currency": "USD"}
    )
    assert response.status_code == 409
    assert set(response.json()) == {"detail"}
    assert_clean_body(response)
    assert Asset.objects.filter(ticker="AAPL").count() == 1


@pytest.mark.django_db
def test_django_validation_error_from_a_service_becomes_400_keyed_by_field(api: Any, operations: Any) -> None:
    response = api(operations).post(
        "/api/v1/clients/", {"name": "Ada", "email": "ada@example.net", "base_currency": "EUR"}
    )
    assert response.status_code == 400
    assert response.json() == {"advisor": ["A client needs a responsible advisor."]}


@pytest.mark.django_db
def test_a_buy_that_moves_no_cash_is_400_on_the_price_field(api: Any) -> None:
    client = ClientFactory()
    asset = AssetFactory()
    payload = {
        "client": client.pk,
        "asset": asset.pk,
        "kind": "buy",
        "quantity": "1",
        "price": "0",
        "date": "2026-01-05",
    }
    response = api(client.advisor).post("/api/v1/allocations/", payload)
    assert response.status_code == 400
    assert list(response.json()) == ["price"]


@pytest.mark.django_db
def test_a_model_wide_constraint_is_400_under_non_field_errors_not_djangos_all_key(api: Any, operations: Any) -> None:
    price = PriceFactory()
    response = api(operations).post(
        "/api/v1/prices/", {"asset": price.asset_id, "date": price.date.isoformat(), "close": "1"}
    )
    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["This asset already has a price for this date."]}


@pytest.mark.django_db
def test_deleting_a_client_that_has_transactions_is_409_and_keeps_the_client(api: Any, operations: Any) -> None:
    client = TransactionFactory().client
    response = api(operations).delete(f"/api/v1/clients/{client.pk}/")
    assert response.status_code == 409
    assert response.json() == {"detail": "This record is still referenced by other records and cannot be deleted."}
    assert_clean_body(response)
    assert type(client).objects.filter(pk=client.pk).exists()


@pytest.mark.django_db
def test_conflict_error_becomes_409_with_its_message(api: Any) -> None:
    client = ClientFactory(base_currency="EUR")
    TransactionFactory(client=client, amount=Decimal("100"))
    payload = {
        "client": client.pk,
        "kind": "withdrawal",
        "amount": "100.01",
        "currency": "EUR",
        "date": datetime.date(2026, 2, 1).isoformat(),
    }
    response = api(client.advisor).post("/api/v1/transactions/", payload)
    assert response.status_code == 409
    assert response.json() == {
        "detail": "Insufficient cash in Main: the withdrawal of 100.0100 EUR would leave -0.0100 EUR at the end of "
        "2026-02-01."
    }


@pytest.mark.django_db
def test_reversing_twice_is_409_not_500(api: Any) -> None:
    deposit = TransactionFactory()
    advisor_api = api(deposit.client.advisor)
    assert advisor_api.post(f"/api/v1/transactions/{deposit.pk}/reverse/", {}).status_code == 201
    response = advisor_api.post(f"/api/v1/transactions/{deposit.pk}/reverse/", {})
    assert response.status_code == 409
    assert response.json() == {"detail": "This transaction has already been reversed."}


@pytest.mark.django_db
def test_an_unexpected_error_is_a_500_without_a_stack_trace(operations: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret internals: /srv/app/holdings/services.py line 42")

    monkeypatch.setattr("holdings.services.asset_create", explode)
    client = APIClient(raise_request_exception=False)
    client.force_authenticate(operations)
    response = client.post("/api/v1/assets/", {"ticker": "X", "name": "X", "currency": "USD"})
    assert response.status_code == 500
    body = response.content.decode()
    assert "secret internals" not in body
    assert "RuntimeError" not in body
    assert "Traceback" not in body


# --- The handler itself ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status", "body"),
    [
        (
            IntegrityError('duplicate key value violates unique constraint "x" DETAIL: Key (email)=(a@b.c)'),
            409,
            {"detail": "The change conflicts with existing data (a uniqueness or integrity rule refused it)."},
        ),
        (DjangoValidationError({"amount": "Too big."}), 400, {"amount": ["Too big."]}),
        (DjangoValidationError(["One.", "Two."]), 400, {"non_field_errors": ["One.", "Two."]}),
        (
            DjangoValidationError({"__all__": ["Whole."], "date": ["Bad."]}),
            400,
            {"non_field_errors": ["Whole."], "date": ["Bad."]},
        ),
        (ConflictError("Not enough units.", field="quantity"), 409, {"detail": "Not enough units."}),
        (
            ProtectedError("Cannot delete", set()),
            409,
            {"detail": "This record is still referenced by other records and cannot be deleted."},
        ),
        (PermissionDenied("Not yours."), 403, {"detail": "Not yours."}),
        (Http404("No such client."), 404, {"detail": "No such client."}),
    ],
    ids=["integrity", "validation-fields", "validation-list", "validation-all", "conflict", "protected", "403", "404"],
)
def test_exception_handler_maps_errors_to_drf_shapes(error: Exception, status: int, body: dict[str, Any]) -> None:
    response = exception_handler(error, {})
    assert response is not None
    assert response.status_code == status
    assert response.data == body


def test_exception_handler_leaves_unknown_errors_to_the_500_handler() -> None:
    assert exception_handler(RuntimeError("boom"), {}) is None


@pytest.mark.django_db
@pytest.mark.parametrize(
    "path", ["/api/v1/orders/0.5/cancel/", "/api/v1/clients/x/valuation/", "/api/v1/assets/1/images/%C2%84/"]
)
def test_an_api_path_no_route_matches_is_a_json_404(operations: Any, path: str) -> None:
    client = APIClient()
    client.force_authenticate(operations)
    response = client.get(path)
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert response.json() == {"detail": "Not found."}


@pytest.mark.django_db
def test_a_page_no_route_matches_outside_the_api_is_still_html(client: Any) -> None:
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
