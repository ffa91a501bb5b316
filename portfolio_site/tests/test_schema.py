"""The OpenAPI schema is valid and tells the truth: real responses of every endpoint are checked against it."""

import datetime
import inspect
import json
import re
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.core.management import call_command
from django.test import Client as DjangoClient
from drf_spectacular.validation import validate_schema
from openapi_core import OpenAPI
from openapi_core.contrib.django import DjangoOpenAPIRequest, DjangoOpenAPIResponse

from accounts.tests.factories import PASSWORD, AdvisorFactory, OperationsFactory, SuperuserFactory, access_token_for
from clients.models import Client
from clients.services import portfolios_history_changed
from clients.tests.factories import ClientFactory, PortfolioFactory, main_portfolio
from holdings.models import FxRate
from holdings.tests.factories import AllocationFactory, AssetFactory, BuyFactory, PriceFactory, SellFactory
from ledger.models import Transaction
from ledger.tests.factories import TransactionFactory
from portfolio_site.api.viewsets import CachedReadMixin, ScopedModelViewSet, ScopedViewSetMixin

HTTP_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture(scope="module")
def schema_document(django_db_blocker: Any) -> dict[str, Any]:
    with django_db_blocker.unblock():
        response = DjangoClient().get("/api/schema/?format=json")
    assert response.status_code == 200
    return json.loads(response.content)


@pytest.fixture(scope="module")
def openapi(schema_document: dict[str, Any]) -> OpenAPI:
    return OpenAPI.from_dict(schema_document)


class _OpenAPIRequest(DjangoOpenAPIRequest):
    """Django's request, read by openapi-core against the real path rather than Django's route.

    Django names the router's path parameter `pk` where the schema says `id`, so path parameters are parsed
    from the path by the schema's template; and DRF has consumed the body stream, so the sent body is kept.
    """

    def __init__(self, request: Any, body: bytes) -> None:
        super().__init__(request)
        self.parameters.path = {}
        self._sent_body = body

    @property
    def path_pattern(self) -> None:  # type: ignore[override]
        return None

    @property
    def body(self) -> bytes:
        return self._sent_body


class ContractClient:
    """Calls the API over HTTP with a real JWT and checks each request and response against the schema."""

    def __init__(self, openapi: OpenAPI, user: Any = None) -> None:
        self.openapi = openapi
        self.http = DjangoClient()
        self.headers = {"HTTP_ACCEPT": "application/json"}
        if user is not None:
            self.headers["HTTP_AUTHORIZATION"] = f"Bearer {access_token_for(user)}"

    def call(self, method: str, path: str, data: Any = None, *, expect: int, check_request: bool | None = None) -> Any:
        body = b"" if data is None else json.dumps(data).encode()
        response = self.http.generic(method, path, body, content_type="application/json", **self.headers)
        assert response.status_code == expect, response.content
        request = _OpenAPIRequest(response.wsgi_request, body)
        # A request that is meant to be refused (bad input, no credentials) is not expected to match the schema.
        if check_request if check_request is not None else expect < 400:
            self.openapi.validate_request(request)
        try:
            self.openapi.validate_response(request, DjangoOpenAPIResponse(response))
        except Exception as error:
            cause = getattr(error, "__cause__", None)
            details = getattr(cause, "schema_errors", None) or cause
            raise AssertionError(f"{method} {path} -> {expect}: {error!r}: {details}: {response.content!r}") from error
        assert b"Traceback" not in response.content
        if response.content:
            described = self.described_response(method, response.wsgi_request.path, response.status_code)
            assert "content" in described, f"{method} {path} -> {expect} has a body the schema does not describe"
        return json.loads(response.content) if response.content else None

    def described_response(self, method: str, path: str, status: int) -> dict[str, Any]:
        paths = self.openapi.spec.read_value()["paths"]
        if path in paths:  # a literal route (`/prices/latest/`) before a template it also fits (`/prices/{id}/`)
            return paths[path][method.lower()]["responses"][str(status)]  # type: ignore[no-any-return]
        for template, item in paths.items():
            if re.fullmatch(re.sub(r"\{[^/]+\}", "[^/]+", template), path):
                return item[method.lower()]["responses"][str(status)]
        raise AssertionError(f"{path} is not in the schema")

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.call("GET", path, **kwargs)

    def post(self, path: str, data: Any = None, **kwargs: Any) -> Any:
        return self.call("POST", path, data if data is not None else {}, **kwargs)

    def put(self, path: str, data: Any, **kwargs: Any) -> Any:
        return self.call("PUT", path, data, **kwargs)

    def patch(self, path: str, data: Any, **kwargs: Any) -> Any:
        return self.call("PATCH", path, data, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.call("DELETE", path, **kwargs)


@pytest.fixture
def as_user(openapi: OpenAPI) -> Any:
    return lambda user=None: ContractClient(openapi, user)


def _operations(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield path, method, operation


# --- The document itself -----------------------------------------------------------------------------------


def test_schema_endpoint_serves_a_valid_openapi_document(schema_document: dict[str, Any]) -> None:
    validate_schema(schema_document)
    assert schema_document["openapi"].startswith("3.")


def test_schema_generates_without_warnings(tmp_path: Any) -> None:
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))


def test_no_operation_is_described_by_the_plumbing_docstrings(schema_document: dict[str, Any]) -> None:
    plumbing = [inspect.getdoc(cls) for cls in (CachedReadMixin, ScopedViewSetMixin, ScopedModelViewSet)]
    leaked = [
        f"{method.upper()} {path}"
        for path, method, operation in _operations(schema_document)
        if operation.get("description") in plumbing
    ]
    assert leaked == []


def test_every_schema_path_is_under_api_v1(schema_document: dict[str, Any]) -> None:
    outside = [path for path in schema_document["paths"] if not path.startswith("/api/v1/")]
    assert outside == []


def test_every_operation_describes_a_success_response(schema_document: dict[str, Any]) -> None:
    missing = [
        f"{method.upper()} {path}"
        for path, method, operation in _operations(schema_document)
        if not any(code.startswith("2") for code in operation["responses"])
    ]
    assert missing == []


# Operations that name exactly the answers they give (`schema_error_codes` on the view): public, so no 401 or 403
# where nothing can refuse the caller, and no 409 where there is nothing to conflict with.
EXACT_RESPONSES = {
    ("get", "/api/v1/auth/oidc/"): {"200"},
    ("post", "/api/v1/auth/oidc/{name}/authorize/"): {"200", "400", "404", "429", "503"},
    ("post", "/api/v1/auth/oidc/{name}/token/"): {"200", "400", "401", "404", "429", "503"},
    ("post", "/api/v1/auth/supabase/token/"): {"200", "400", "401", "404", "429", "503"},
}


def test_the_public_sign_in_operations_describe_exactly_the_answers_they_give(
    schema_document: dict[str, Any],
) -> None:
    described = {
        (method, path): set(operation["responses"])
        for path, method, operation in _operations(schema_document)
        if (method, path) in EXACT_RESPONSES
    }
    assert described == EXACT_RESPONSES


def test_every_operation_describes_its_error_responses(schema_document: dict[str, Any]) -> None:
    """401 everywhere; 400 where input is read; 404 where an id is in the path; 409 on every domain write."""
    missing = []
    for path, method, operation in _operations(schema_document):
        if (method, path) in EXACT_RESPONSES:
            continue
        codes = set(operation["responses"])
        expected = {"401"}
        if method in {"post", "put", "patch"} or operation["operationId"].endswith("_list"):
            expected.add("400")
        if "{id}" in path:
            expected.add("404")
        if method in {"post", "put", "patch", "delete"} and not path.startswith("/api/v1/auth/token/"):
            expected.add("409")
        missing += [f"{method.upper()} {path}: {code}" for code in sorted(expected - codes)]
    assert missing == []


def test_error_responses_reference_the_drf_error_shapes(schema_document: dict[str, Any]) -> None:
    schemas = schema_document["components"]["schemas"]
    assert schemas["ErrorDetail"]["required"] == ["detail"]
    assert schemas["ValidationError"]["type"] == "object"
    for path, method, operation in _operations(schema_document):
        for code, response in operation["responses"].items():
            if code in {"401", "403", "404", "409"}:
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref == "#/components/schemas/ErrorDetail", f"{method} {path} {code}"


# --- Users and auth ----------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_user_endpoints_match_the_schema(as_user: Any) -> None:
    admin = SuperuserFactory()
    api = as_user(admin)
    listed = api.get("/api/v1/users/", expect=200)
    assert listed["count"] == 1
    created = api.post(
        "/api/v1/users/",
        {"email": "New.Advisor@Example.com", "full_name": "New Advisor", "password": PASSWORD, "groups": ["Advisors"]},
        expect=201,
    )
    assert created["email"] == "new.advisor@example.com"
    assert "password" not in created
    url = f"/api/v1/users/{created['id']}/"
    assert api.get(url, expect=200)["groups"] == ["Advisors"]
    api.put(url, {"email": "new.advisor@example.com", "full_name": "Renamed", "groups": []}, expect=200)
    assert api.patch(url, {"is_active": False}, expect=200)["is_active"] is False
    assert "email" in api.post("/api/v1/users/", {"email": "NEW.advisor@example.com"}, expect=400)
    assert "groups" in api.patch(url, {"groups": ["No such role"]}, expect=400)
    assert "detail" in api.get("/api/v1/users/999999/", expect=404)
    assert "detail" in api.get("/api/v1/users/?page=99", expect=404)
    assert "detail" in as_user(AdvisorFactory()).get("/api/v1/users/", expect=403)
    assert "detail" in as_user().get("/api/v1/users/", expect=401)


@pytest.mark.django_db
def test_register_endpoint_matches_the_schema(as_user: Any) -> None:
    anonymous = as_user()
    first = anonymous.post(
        "/api/v1/auth/register/", {"email": "first@example.com", "password": PASSWORD, "full_name": "First"}, expect=201
    )
    assert first["is_superuser"] is True
    assert "detail" in anonymous.post(
        "/api/v1/auth/register/", {"email": "second@example.com", "password": PASSWORD}, expect=401
    )
    assert "detail" in as_user(AdvisorFactory()).post(
        "/api/v1/auth/register/", {"email": "second@example.com", "password": PASSWORD}, expect=403
    )
    admin = as_user(SuperuserFactory())
    admin.post("/api/v1/auth/register/", {"email": "second@example.com", "password": PASSWORD}, expect=201)
    assert "email" in admin.post(
        "/api/v1/auth/register/", {"email": "SECOND@example.com", "password": PASSWORD}, expect=400
    )
    assert "password" in admin.post(
        "/api/v1/auth/register/", {"email": "weak@example.com", "password": "123"}, expect=400
    )


# --- Clients -----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_client_endpoints_match_the_schema(as_user: Any) -> None:
    advisor = AdvisorFactory()
    ClientFactory(advisor=advisor, phone="")
    api = as_user(advisor)
    assert api.get("/api/v1/clients/?ordering=name&search=example&page_size=10", expect=200)["count"] == 1
    created = api.post(
        "/api/v1/clients/", {"name": "Ada", "email": "ada@example.net", "base_currency": "chf"}, expect=201
    )
    assert (created["advisor"], created["base_currency"]) == (advisor.pk, "CHF")
    url = f"/api/v1/clients/{created['id']}/"
    assert api.get(url, expect=200)["name"] == "Ada"
    api.put(
        url,
        {"name": "Ada L.", "email": "ada@example.net", "base_currency": "CHF", "phone": "+41 44 000 00 00"},
        expect=200,
    )
    assert api.patch(url, {"notes": "Prefers email."}, expect=200)["notes"] == "Prefers email."
    assert "base_currency" in api.patch(url, {"base_currency": "XYZ"}, expect=400)
    assert "detail" in api.get("/api/v1/clients/999999/", expect=404)
    someone_elses = ClientFactory()
    assert "detail" in api.get(f"/api/v1/clients/{someone_elses.pk}/", expect=404)
    TransactionFactory(client=Client.objects.get(pk=created["id"]), currency="CHF")
    operations = as_user(OperationsFactory())
    assert "detail" in operations.delete(url, expect=409)
    assert "detail" in api.delete(url, expect=403)
    operations.delete(f"/api/v1/clients/{someone_elses.pk}/", expect=204)
    assert "email" in api.post(
        "/api/v1/clients/", {"name": "Dup", "email": "ADA@example.net", "base_currency": "EUR"}, expect=400
    )


@pytest.mark.django_db
def test_client_balances_endpoint_matches_the_schema(as_user: Any) -> None:
    client = ClientFactory()
    TransactionFactory(client=client, amount=Decimal("150.5"), currency="EUR")
    TransactionFactory(client=client, amount=Decimal("20"), currency="USD", kind=Transaction.Kind.WITHDRAWAL)
    api = as_user(client.advisor)
    balances = api.get(f"/api/v1/clients/{client.pk}/balances/", expect=200)
    assert balances == {
        "client": client.pk,
        "balances": [
            {"currency": "EUR", "amount": "150.5000", "on_hold": "0.0000", "available": "150.5000"},
            {"currency": "USD", "amount": "-20.0000", "on_hold": "0.0000", "available": "-20.0000"},
        ],
    }
    assert "detail" in api.get(f"/api/v1/clients/{ClientFactory().pk}/balances/", expect=404)


@pytest.mark.django_db
def test_client_create_with_portfolios_matches_the_schema(as_user: Any) -> None:
    api = as_user(AdvisorFactory())
    body = {
        "name": "Ada",
        "email": "ada@example.net",
        "base_currency": "EUR",
        "portfolios": [{"name": "Taxable", "kind": "taxable", "custodian": "Acme", "account_number": "A-1"}],
    }
    created = api.post("/api/v1/clients/", body, expect=201)
    assert [p["name"] for p in created["portfolios"]] == ["Taxable"]
    url = f"/api/v1/clients/{created['id']}/"
    assert "portfolios" in api.patch(url, {"portfolios": [{"name": "Other"}]}, expect=400)


@pytest.mark.django_db
def test_portfolio_endpoints_match_the_schema(as_user: Any) -> None:
    client = ClientFactory()
    api = as_user(client.advisor)
    assert api.get(f"/api/v1/portfolios/?client={client.pk}&is_open=true&ordering=name", expect=200)["count"] == 1
    created = api.post(
        "/api/v1/portfolios/",
        {"client": client.pk, "name": "Pension", "kind": "retirement", "base_currency": "usd"},
        expect=201,
    )
    assert (created["base_currency"], created["is_open"], created["client_name"]) == ("USD", True, client.name)
    url = f"/api/v1/portfolios/{created['id']}/"
    api.get(url, expect=200)
    api.put(url, {"client": client.pk, "name": "Pension (DE)", "kind": "retirement", "custodian": "Acme"}, expect=200)
    assert api.patch(url, {"closed_on": "2099-12-31"}, expect=200)["is_open"] is False
    assert "non_field_errors" in api.post("/api/v1/portfolios/", {"client": client.pk, "name": "main"}, expect=400)
    assert "client" in api.post("/api/v1/portfolios/", {"client": ClientFactory().pk, "name": "X"}, expect=400)
    assert "detail" in api.get(f"/api/v1/portfolios/{PortfolioFactory().pk}/", expect=404)
    assert "detail" in api.delete(url, expect=403)
    operations = as_user(OperationsFactory())
    TransactionFactory(portfolio=main_portfolio(client))
    assert "detail" in operations.delete(f"/api/v1/portfolios/{main_portfolio(client).pk}/", expect=409)
    operations.delete(url, expect=204)


@pytest.mark.django_db
def test_portfolio_balances_and_transfer_endpoints_match_the_schema(as_user: Any) -> None:
    client = ClientFactory(base_currency="USD")
    main, pension = main_portfolio(client), PortfolioFactory(client=client)
    TransactionFactory(portfolio=main, amount=Decimal("500"), currency="USD")
    held = AllocationFactory(portfolio=main, quantity=Decimal("10"))
    api = as_user(client.advisor)
    cash = {"to_portfolio": pension.pk, "amount": "120.5", "currency": "USD", "date": "2026-03-01"}
    legs = api.post(f"/api/v1/portfolios/{main.pk}/transfer-cash/", cash, expect=201)
    assert (legs["outgoing"]["amount"], legs["incoming"]["counterpart"]) == ("120.5000", legs["outgoing"]["id"])
    assert api.get(f"/api/v1/portfolios/{pension.pk}/balances/", expect=200) == {
        "portfolio": pension.pk,
        "client": client.pk,
        "balances": [{"currency": "USD", "amount": "120.5000", "on_hold": "0.0000", "available": "120.5000"}],
    }
    assert "detail" in api.post(f"/api/v1/portfolios/{main.pk}/transfer-cash/", {**cash, "amount": "1000"}, expect=409)
    assert "to_portfolio" in api.post(
        f"/api/v1/portfolios/{main.pk}/transfer-cash/", {**cash, "to_portfolio": main.pk}, expect=400
    )
    shares = {"to_portfolio": pension.pk, "asset": held.asset_id, "quantity": "4", "date": "2026-03-01"}
    moved = api.post(f"/api/v1/portfolios/{main.pk}/transfer-units/", shares, expect=201)
    assert (moved["outgoing"]["kind"], moved["incoming"]["kind"]) == ("transfer_out", "transfer_in")
    assert "detail" in api.post(
        f"/api/v1/portfolios/{main.pk}/transfer-units/", {**shares, "quantity": "7"}, expect=409
    )
    assert "quantity" in api.post(
        f"/api/v1/portfolios/{main.pk}/transfer-units/", {**shares, "quantity": "0"}, expect=400
    )
    someone_elses = PortfolioFactory()
    assert "detail" in api.get(f"/api/v1/portfolios/{someone_elses.pk}/balances/", expect=404)
    assert "detail" in api.post(f"/api/v1/portfolios/{someone_elses.pk}/transfer-cash/", cash, expect=404)
    assert "detail" in api.post(f"/api/v1/portfolios/{someone_elses.pk}/transfer-units/", shares, expect=404)


@pytest.mark.django_db
def test_positions_and_valuation_endpoints_match_the_schema(as_user: Any) -> None:
    client = ClientFactory(base_currency="EUR")
    main, pension = main_portfolio(client), PortfolioFactory(client=client)
    priced, unpriced = AssetFactory(currency="USD"), AssetFactory(currency="GBP")
    PriceFactory(asset=priced, date=datetime.date(2026, 2, 20), close=Decimal("12.5"))
    FxRate.objects.create(base="EUR", quote="USD", date=datetime.date(2026, 1, 1), rate=Decimal("1.25"))
    TransactionFactory(portfolio=main, amount=Decimal("100"), currency="EUR")
    AllocationFactory(portfolio=main, asset=priced, quantity=Decimal("4"), price=Decimal("10"))
    AllocationFactory(portfolio=pension, asset=unpriced, quantity=Decimal("1"), price=Decimal("1"))
    api = as_user(client.advisor)
    for path in (f"/api/v1/portfolios/{main.pk}", f"/api/v1/clients/{client.pk}"):
        positions = api.get(f"{path}/positions/?as_of=2026-03-01&cost_method=fifo", expect=200)
        assert positions["positions"][0]["market_value"] == "50.00"
        valuation = api.get(f"{path}/valuation/?as_of=2026-03-01&currency=USD", expect=200)
        assert valuation["totals"]["holdings"] == "50.00"
        assert "cost_method" in api.get(f"{path}/valuation/?cost_method=lifo", expect=400)
    assert [item["asset"] for item in valuation["unpriced"]] == [unpriced.pk]
    assert valuation["missing_fx"][0]["asset"] == unpriced.pk
    someone_elses = ClientFactory()
    assert "detail" in api.get(f"/api/v1/clients/{someone_elses.pk}/valuation/", expect=404)
    assert "detail" in api.get(f"/api/v1/portfolios/{main_portfolio(someone_elses).pk}/positions/", expect=404)


@pytest.mark.django_db
def test_realized_gains_endpoints_match_the_schema(as_user: Any) -> None:
    client = ClientFactory(base_currency="EUR")
    main = main_portfolio(client)
    asset = AssetFactory(currency="USD")
    FxRate.objects.create(base="EUR", quote="USD", date=datetime.date(2026, 1, 1), rate=Decimal("1.25"))
    AllocationFactory(portfolio=main, asset=asset, quantity=Decimal("4"), price=Decimal("10"))
    SellFactory(portfolio=main, asset=asset, quantity=Decimal("1"), price=Decimal("15"), date=datetime.date(2026, 3, 2))
    api = as_user(client.advisor)
    for path in (f"/api/v1/portfolios/{main.pk}", f"/api/v1/clients/{client.pk}"):
        report = api.get(f"{path}/realized-gains/?year=2026&cost_method=fifo", expect=200)
        assert report["sales"][0]["gain"] == "5.00"
        assert report["totals"]["gain"] == "4.00"  # 15 / 1.25 - 10 / 1.25
        assert "year" in api.get(f"{path}/realized-gains/?year=twenty", expect=400)
        assert "cost_method" in api.get(f"{path}/realized-gains/?year=2026&cost_method=lifo", expect=400)
    assert "detail" in api.get(f"/api/v1/clients/{ClientFactory().pk}/realized-gains/?year=2026", expect=404)


# --- Assets, prices and allocations ------------------------------------------------------------------------


@pytest.mark.django_db
def test_split_endpoints_match_the_schema(as_user: Any) -> None:
    api = as_user(OperationsFactory())
    asset = AssetFactory()
    payload = {"asset": asset.pk, "date": "2026-03-02", "new_units": "1", "old_units": "10", "cash_in_lieu_price": "5"}
    created = api.post("/api/v1/splits/", payload, expect=201)
    url = f"/api/v1/splits/{created['id']}/"
    assert api.get(f"/api/v1/splits/?asset={asset.pk}", expect=200)["count"] == 1
    api.get(url, expect=200)
    api.patch(url, {"cash_in_lieu_price": None}, expect=200)
    assert "new_units" in api.post("/api/v1/splits/", {**payload, "new_units": "0"}, expect=400)
    api.delete(url, expect=204)


@pytest.mark.django_db
def test_asset_endpoints_match_the_schema(as_user: Any) -> None:
    api = as_user(OperationsFactory())
    AssetFactory()
    assert api.get("/api/v1/assets/?asset_type=equity", expect=200)["count"] == 1
    created = api.post(
        "/api/v1/assets/",
        {"ticker": "aapl", "name": "Apple", "exchange": "xnas", "currency": "usd", "isin": "US0378331005"},
        expect=201,
    )
    assert (created["ticker"], created["exchange"], created["currency"]) == ("AAPL", "XNAS", "USD")
    url = f"/api/v1/assets/{created['id']}/"
    api.get(url, expect=200)
    api.put(url, {"ticker": "AAPL", "name": "Apple Inc.", "exchange": "XNAS", "currency": "USD"}, expect=200)
    api.patch(url, {"asset_type": "etf"}, expect=200)
    assert "isin" in api.patch(url, {"isin": "US0378331006"}, expect=400)
    assert "detail" in api.get("/api/v1/assets/999999/", expect=404)
    AllocationFactory(asset_id=created["id"])
    assert "detail" in api.patch(url, {"currency": "EUR"}, expect=409)
    assert "detail" in api.delete(url, expect=409)
    api.delete(f"/api/v1/assets/{AssetFactory().pk}/", expect=204)
    assert "detail" in as_user(AdvisorFactory()).post("/api/v1/assets/", {"ticker": "X"}, expect=403)


@pytest.mark.django_db
def test_price_endpoints_match_the_schema(as_user: Any) -> None:
    api = as_user(OperationsFactory())
    asset = AssetFactory()
    PriceFactory(asset=asset)
    assert api.get(f"/api/v1/prices/?asset={asset.pk}&date_after=2020-01-01", expect=200)["count"] == 1
    created = api.post("/api/v1/prices/", {"asset": asset.pk, "date": "2025-06-30", "close": "187.1234"}, expect=201)
    assert (created["close"], created["currency"]) == ("187.1234000000", "USD")
    url = f"/api/v1/prices/{created['id']}/"
    api.get(url, expect=200)
    api.put(url, {"asset": asset.pk, "date": "2025-06-30", "close": "190"}, expect=200)
    api.patch(url, {"close": "191.5"}, expect=200)
    assert "close" in api.patch(url, {"close": "-1"}, expect=400)
    duplicate = api.post("/api/v1/prices/", {"asset": asset.pk, "date": "2025-06-30", "close": "1"}, expect=400)
    assert duplicate
    assert "asset" in api.get("/api/v1/prices/?asset=999999", expect=400)
    assert "detail" in api.get("/api/v1/prices/999999/", expect=404)
    api.delete(url, expect=204)


@pytest.mark.django_db
def test_latest_prices_match_the_schema(as_user: Any) -> None:
    api = as_user(AdvisorFactory())
    priced, unpriced = PriceFactory().asset, AssetFactory()
    latest = api.get(f"/api/v1/prices/latest/?asset={priced.pk}&asset={unpriced.pk}", expect=200)
    assert [row["close"] is None for row in latest] == [False, True]
    assert "asset" in api.get("/api/v1/prices/latest/?asset=999999", expect=400)
    assert "as_of" in api.get(f"/api/v1/prices/latest/?asset={priced.pk}&as_of=x", expect=400)


@pytest.mark.django_db
def test_asset_holders_match_the_schema(as_user: Any) -> None:
    advisor = AdvisorFactory()
    allocation = AllocationFactory(client=ClientFactory(advisor=advisor))
    api = as_user(advisor)
    url = f"/api/v1/assets/{allocation.asset_id}/holders/"
    holders = api.get(f"{url}?as_of=2026-12-31", expect=200)
    assert [row["portfolio"] for row in holders["results"]] == [allocation.portfolio_id]
    assert "as_of" in api.get(f"{url}?as_of=x", expect=400)
    assert "detail" in api.get("/api/v1/assets/999999/holders/", expect=404)


@pytest.mark.django_db
def test_fx_rate_endpoints_match_the_schema(as_user: Any) -> None:
    api = as_user(OperationsFactory())
    created = api.post(
        "/api/v1/fx-rates/", {"base": "eur", "quote": "usd", "date": "2026-03-02", "rate": "1.08"}, expect=201
    )
    assert (created["base"], created["rate"]) == ("EUR", "1.0800000000")
    assert api.get("/api/v1/fx-rates/?base=EUR&quote=USD&date_after=2026-03-01", expect=200)["count"] == 1
    url = f"/api/v1/fx-rates/{created['id']}/"
    api.get(url, expect=200)
    api.put(url, {"base": "EUR", "quote": "USD", "date": "2026-03-02", "rate": "1.09"}, expect=200)
    api.patch(url, {"rate": "1.1"}, expect=200)
    assert "rate" in api.patch(url, {"rate": "0"}, expect=400)
    converted = api.get("/api/v1/fx-rates/convert/?base=USD&quote=EUR&on=2026-03-05", expect=200)
    assert (converted["rate_date"], converted["via"]) == ("2026-03-02", None)
    assert "quote" in api.get("/api/v1/fx-rates/convert/?base=USD&quote=EURO", expect=400)
    assert "detail" in api.get("/api/v1/fx-rates/convert/?base=USD&quote=JPY&on=2026-03-05", expect=404)
    assert "detail" in api.get("/api/v1/fx-rates/999999/", expect=404)
    api.delete(url, expect=204)
    assert "detail" in as_user(AdvisorFactory()).post("/api/v1/fx-rates/", {"base": "EUR"}, expect=403)


@pytest.mark.django_db
def test_allocation_endpoints_match_the_schema(as_user: Any) -> None:
    client = ClientFactory(base_currency="USD")
    asset = AssetFactory(currency="USD")
    TransactionFactory(client=client, amount=Decimal("5000"), currency="USD")
    BuyFactory(client=client, asset=asset, quantity=Decimal("1"), price=Decimal("10"))
    api = as_user(client.advisor)
    assert api.get(f"/api/v1/allocations/?client={client.pk}", expect=200)["count"] == 1
    buy = {
        "client": client.pk,
        "asset": asset.pk,
        "kind": "buy",
        "quantity": "10",
        "price": "100",
        "date": "2026-02-02",
    }
    created = api.post("/api/v1/allocations/", buy, expect=201)
    assert created["settlement"] is not None
    url = f"/api/v1/allocations/{created['id']}/"
    api.get(url, expect=200)
    api.put(url, {**buy, "quantity": "5", "fees": "1.5"}, expect=200)
    api.patch(url, {"notes": "Rebalance"}, expect=200)
    assert "quantity" in api.patch(url, {"quantity": "0"}, expect=400)
    assert "detail" in api.patch(url, {"quantity": "1000"}, expect=409)
    sell_too_much = {**buy, "kind": "sell", "quantity": "1000"}
    assert "detail" in api.post("/api/v1/allocations/", sell_too_much, expect=409)
    assert "client" in api.post("/api/v1/allocations/", {**buy, "client": ClientFactory().pk}, expect=400)
    pension = PortfolioFactory(client=client)
    assert "portfolio" in api.post("/api/v1/allocations/", buy, expect=400)
    by_portfolio = {**buy, "portfolio": pension.pk, "kind": "transfer_in"}
    del by_portfolio["client"]
    assert api.post("/api/v1/allocations/", by_portfolio, expect=201)["portfolio"] == pension.pk
    assert api.get(f"/api/v1/allocations/?portfolio={pension.pk}", expect=200)["count"] == 1
    assert "detail" in api.get("/api/v1/allocations/999999/", expect=404)
    api.delete(url, expect=204)


# --- The ledger --------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_transaction_endpoints_match_the_schema(as_user: Any) -> None:
    client = ClientFactory()
    TransactionFactory(client=client)
    api = as_user(client.advisor)
    assert api.get(f"/api/v1/transactions/?client={client.pk}&is_reversal=false", expect=200)["count"] == 1
    deposit = {
        "client": client.pk,
        "kind": "deposit",
        "amount": "250.00",
        "currency": "eur",
        "date": datetime.date(2026, 3, 1).isoformat(),
        "reference": "wire-1",
    }
    created = api.post("/api/v1/transactions/", deposit, expect=201)
    assert (created["amount"], created["currency"], created["reversed_by"]) == ("250.0000", "EUR", None)
    assert api.post("/api/v1/transactions/", deposit, expect=200)["id"] == created["id"]
    assert "detail" in api.post("/api/v1/transactions/", {**deposit, "amount": "1"}, expect=409)
    url = f"/api/v1/transactions/{created['id']}/"
    api.get(url, expect=200)
    reversal = api.post(f"{url}reverse/", {"notes": "Entered twice"}, expect=201)
    assert reversal["reverses"] == created["id"]
    assert api.get(url, expect=200)["reversed_by"] == reversal["id"]
    assert "detail" in api.post(f"{url}reverse/", {}, expect=409)
    withdrawal = {**deposit, "kind": "withdrawal", "amount": "1000000", "reference": None}
    assert "detail" in api.post("/api/v1/transactions/", withdrawal, expect=409)
    assert "kind" in api.post("/api/v1/transactions/", {**deposit, "kind": "buy"}, expect=400)
    assert "amount" in api.post("/api/v1/transactions/", {**deposit, "amount": "-5"}, expect=400)
    assert "detail" in api.get("/api/v1/transactions/999999/", expect=404)
    assert "detail" in api.post("/api/v1/transactions/999999/reverse/", {}, expect=404)
    pension = PortfolioFactory(client=client)
    assert "portfolio" in api.post("/api/v1/transactions/", {**deposit, "reference": None}, expect=400)
    by_portfolio = {**deposit, "portfolio": pension.pk, "reference": "wire-2"}
    del by_portfolio["client"]
    assert api.post("/api/v1/transactions/", by_portfolio, expect=201)["portfolio"] == pension.pk
    assert api.get(f"/api/v1/transactions/?portfolio={pension.pk}", expect=200)["count"] == 1


IDEMPOTENT_OPERATIONS = {
    ("post", "/api/v1/transactions/"),
    ("post", "/api/v1/allocations/"),
    ("post", "/api/v1/portfolios/{id}/transfer-cash/"),
    ("post", "/api/v1/orders/"),
}


def test_exactly_the_idempotent_operations_take_the_key_header_and_may_answer_422(
    schema_document: dict[str, Any],
) -> None:
    documented = {
        (method, path)
        for path, method, operation in _operations(schema_document)
        if any(p["in"] == "header" and p["name"] == "Idempotency-Key" for p in operation.get("parameters", []))
    }
    assert documented == IDEMPOTENT_OPERATIONS
    for method, path in IDEMPOTENT_OPERATIONS:
        responses = schema_document["paths"][path][method]["responses"]
        assert responses["422"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/ErrorDetail"
        assert "Idempotent-Replayed" in responses["201"]["headers"]


@pytest.mark.django_db
def test_idempotency_key_answers_match_the_schema(as_user: Any) -> None:
    client = ClientFactory()
    api = as_user(client.advisor)
    deposit = {"client": client.pk, "kind": "deposit", "amount": "10", "currency": "EUR", "date": "2026-03-01"}
    api.headers["HTTP_IDEMPOTENCY_KEY"] = "3f1c2a9e-0d5b-4c1e-9a57-1b2c3d4e5f60"
    created = api.post("/api/v1/transactions/", deposit, expect=201)
    assert api.post("/api/v1/transactions/", deposit, expect=201) == created
    assert "detail" in api.post("/api/v1/transactions/", {**deposit, "amount": "11"}, expect=422)
    api.headers["HTTP_IDEMPOTENCY_KEY"] = "k" * 256
    assert "Idempotency-Key" in api.post("/api/v1/transactions/", deposit, expect=400)


@pytest.mark.django_db
def test_performance_endpoints_match_the_schema(as_user: Any) -> None:
    client = ClientFactory(base_currency="EUR")
    main, pension = main_portfolio(client), PortfolioFactory(client=client, base_currency="USD")
    asset, index = AssetFactory(currency="USD"), AssetFactory(currency="EUR")
    FxRate.objects.create(base="EUR", quote="USD", date=datetime.date(2025, 1, 1), rate=Decimal("1.25"))
    PriceFactory(asset=asset, date=datetime.date(2025, 1, 2), close=Decimal("10"))
    PriceFactory(asset=index, date=datetime.date(2025, 1, 1), close=Decimal("100"))
    TransactionFactory(portfolio=main, amount=Decimal("100"), currency="EUR", date=datetime.date(2025, 1, 2))
    BuyFactory(
        portfolio=pension, asset=asset, quantity=Decimal("1"), price=Decimal("9"), date=datetime.date(2025, 1, 2)
    )
    portfolios_history_changed(portfolios=[main.pk, pension.pk], since=datetime.date(2025, 1, 1))
    api = as_user(client.advisor)
    for path in (f"/api/v1/portfolios/{pension.pk}", f"/api/v1/clients/{client.pk}"):
        body = api.get(f"{path}/performance/?end=2025-03-01&currency=EUR&benchmark={index.pk}", expect=200)
        assert body["figures"]["available"]
        assert "start" in api.get(f"{path}/performance/?start=2025-03-02&end=2025-03-01", expect=400)
        position = api.get(f"{path}/positions/{asset.pk}/performance/?end=2025-03-01", expect=200)
        assert position["flows"][0]["kind"] == "buy"
    later = api.get(f"/api/v1/portfolios/{main.pk}/performance/?start=2030-01-01&end=2030-01-02", expect=200)
    assert (later["benchmark"], later["figures"]["money_weighted"]) == (None, "0.0000000000")
    someone_elses = ClientFactory()
    assert "detail" in api.get(f"/api/v1/clients/{someone_elses.pk}/performance/", expect=404)
    assert "detail" in api.get(f"/api/v1/portfolios/{main_portfolio(someone_elses).pk}/performance/", expect=404)


@pytest.mark.django_db
def test_both_ways_of_paging_the_large_lists_match_the_schema(as_user: Any, schema_document: dict[str, Any]) -> None:
    client = ClientFactory()
    TransactionFactory.create_batch(3, client=client)
    AllocationFactory.create_batch(3, client=client)
    api = as_user(client.advisor)
    for path in ("/api/v1/transactions/", "/api/v1/allocations/"):
        parameters = {p["name"] for p in schema_document["paths"][path]["get"]["parameters"]}
        assert {"page", "page_size", "cursor"} <= parameters
        numbered = api.get(f"{path}?page_size=2", expect=200)
        assert (numbered["count"], numbered["count_exact"]) == (3, True)
        first = api.get(f"{path}?cursor=&page_size=2", expect=200)
        assert "count" not in first
        second = api.get(first["next"].removeprefix("http://testserver"), expect=200)
        assert second["next"] is None
        assert second["previous"] is not None
        assert "cursor" in api.get(f"{path}?cursor=not-ours", expect=400)
        assert "ordering" in api.get(f"{path}?cursor=&ordering=date", expect=400)
    described = schema_document["components"]["schemas"]["PaginatedTransactionList"]["oneOf"]
    assert [sorted(shape["required"]) for shape in described] == [
        ["count", "count_exact", "next", "previous", "results"],
        ["next", "previous", "results"],
    ]


@pytest.mark.django_db
def test_asset_image_endpoints_match_the_schema(as_user: Any, settings: Any, tmp_path: Any) -> None:
    from holdings.tests.factories import AssetDescriptionProposalFactory, AssetImageFactory

    settings.MEDIA_ROOT = tmp_path
    api = as_user(OperationsFactory())
    proposal = AssetDescriptionProposalFactory()
    image, asset = proposal.image, proposal.image.asset
    images = f"/api/v1/assets/{asset.pk}/images/"
    proposals = f"/api/v1/assets/{asset.pk}/description-proposals/"

    assert api.get(images, expect=200)["count"] == 1
    api.get(f"{images}{image.pk}/", expect=200)
    # A streamed body, which the contract client cannot read: the schema says what it is, and it is that.
    file_url = f"{images}{image.pk}/file/"
    assert set(api.described_response("GET", file_url, 200)["content"]) == {"image/png", "image/jpeg", "image/webp"}
    downloaded = api.http.get(file_url, **api.headers)
    assert (downloaded.status_code, downloaded["Content-Type"]) == (200, "image/png")
    assert "detail" in api.post(f"{images}{image.pk}/describe/", expect=409)
    assert api.get(proposals, expect=200)["count"] == 1
    api.get(f"{proposals}{proposal.pk}/", expect=200)
    assert api.post(f"{proposals}{proposal.pk}/accept/", expect=200)["status"] == "accepted"
    assert "detail" in api.post(f"{proposals}{proposal.pk}/reject/", expect=409)
    assert "detail" in api.get(f"/api/v1/assets/{asset.pk}/images/999999/", expect=404)
    api.delete(f"{images}{AssetImageFactory(asset=asset).pk}/", expect=204)
    assert "detail" in as_user(AdvisorFactory()).post(f"{proposals}{proposal.pk}/reject/", expect=403)


def test_the_image_upload_takes_a_multipart_body_with_a_binary_file(schema_document: dict[str, Any]) -> None:
    upload = schema_document["paths"]["/api/v1/assets/{asset_pk}/images/"]["post"]
    body = upload["requestBody"]["content"]
    assert set(body) == {"multipart/form-data"}
    schema = body["multipart/form-data"]["schema"]
    if "$ref" in schema:
        schema = schema_document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[-1]]
    assert schema["properties"]["file"] == {**schema["properties"]["file"], "type": "string", "format": "binary"}
    assert "file" in schema["required"]
    assert {"201", "400", "404", "415"} <= set(upload["responses"])


def test_asking_for_a_description_documents_its_throttle(schema_document: dict[str, Any]) -> None:
    describe = schema_document["paths"]["/api/v1/assets/{asset_pk}/images/{id}/describe/"]["post"]
    assert {"202", "404", "409", "429"} <= set(describe["responses"])


def _throttled_operations() -> set[tuple[str, str]]:
    """(method, path) of every operation on which DRF runs throttles, from the views themselves."""
    from drf_spectacular.generators import SchemaGenerator

    generator = SchemaGenerator()
    generator._initialise_endpoints()
    operations = set()
    for path, _, method, view in generator._get_paths_and_endpoints():
        if view.get_throttles():
            operations.add((method.lower(), path))
    return operations


def test_every_throttled_operation_documents_429_with_retry_after(schema_document: dict[str, Any]) -> None:
    # Found by the fuzz run (test_fuzz.py): login, token refresh, register, password reset and change answered an
    # undocumented 429 once their throttle tripped.
    throttled = _throttled_operations()
    assert ("post", "/api/v1/auth/login/") in throttled
    for method, path in throttled:
        assert "429" in schema_document["paths"][path][method]["responses"], f"{method.upper()} {path}"
    for path, operations in schema_document["paths"].items():
        for method, operation in operations.items():
            too_many = operation.get("responses", {}).get("429") if method in HTTP_METHODS else None
            if too_many is not None:
                assert "Retry-After" in too_many.get("headers", {}), f"{method.upper()} {path}"
