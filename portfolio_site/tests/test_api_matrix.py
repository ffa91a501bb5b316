"""Every API operation by every role → the status the table says: the API side of the authorization matrix.

The operations are found, not listed: every operation of the OpenAPI schema drf-spectacular generates from the
router and every urlpattern under /api/v1/. A new operation without a row in EXPECTED fails
`test_every_api_operation_has_an_expectation_for_every_role`, naming it (and the failure of its matrix test prints the
row it would need). The admin side (pages and offered actions by role) is test_role_matrix.py; what an advisor reads
of another's rows through lists, filters, search, ordering, exports and the cache is test_visibility_matrix.py.

Each object in a path is advisor A's (a client of advisor A, or a row of one), or an object anyone with the view
permission may see (reference data), so that advisor B answers 404 where advisor A answers 2xx. Writes send an empty
JSON body: a role allowed past the permission check answers 400 (or does the action, when it needs no input), a role
refused answers 403/404 before the body is read. Each role's request runs in a savepoint that is rolled back, with a
clean cache, so a delete or a logout by one role does not change what the next one meets.

Budget: 149 operations by 7 roles, about 30 s on SQLite (one test per operation, its own objects).
"""

import json
import re
from typing import Any

import pytest
from django.core.cache import cache
from django.db import models, transaction
from django.test import Client as DjangoClient
from django.urls import resolve
from drf_spectacular.generators import SchemaGenerator
from rest_framework.viewsets import ViewSetMixin

from accounts.models import LoginSession
from accounts.tests.factories import (
    AdvisorFactory,
    AuditorFactory,
    OperationsFactory,
    SuperuserFactory,
    UserFactory,
    access_token_for,
)
from clients.models import Client, Portfolio
from clients.tests.factories import ClientFactory
from holdings.tests.factories import AssetFactory
from portfolio_site.counting import forget_estimates
from portfolio_site.scoping import owner_path
from portfolio_site.tests.test_role_matrix import OBJECT
from portfolio_site.tests.test_visibility_matrix import ROW_FOR_CLIENT

pytestmark = pytest.mark.django_db

ROLES = ("anonymous", "advisor_a", "advisor_b", "operations", "auditor", "nobody", "superuser")
METHODS = ("get", "post", "put", "patch", "delete")

# operationId → the status each role gets, in the order of ROLES:
#   anonymous, advisor A, advisor B, operations, auditor, staff in no group, superuser.
EXPECTED: dict[str, str] = {
    "allocations_create": "401 400 400 400 403 403 400",
    "allocations_destroy": "401 204 404 204 403 403 204",
    "allocations_list": "401 200 200 200 200 403 200",
    "allocations_partial_update": "401 200 404 200 403 403 200",
    "allocations_retrieve": "401 200 404 200 200 403 200",
    "allocations_update": "401 400 404 400 403 403 400",
    "assets_create": "401 403 403 400 403 403 400",
    "assets_description_proposals_accept_create": "401 403 403 200 403 403 200",
    "assets_description_proposals_list": "401 200 200 200 200 403 200",
    "assets_description_proposals_reject_create": "401 403 403 200 403 403 200",
    "assets_description_proposals_retrieve": "401 200 200 200 200 403 200",
    "assets_destroy": "401 403 403 204 403 403 204",
    "assets_holders_list": "401 200 200 200 200 403 200",
    "assets_images_create": "401 403 403 415 403 403 415",
    "assets_images_describe_create": "401 403 403 409 403 403 409",
    "assets_images_destroy": "401 403 403 204 403 403 204",
    "assets_images_file_retrieve": "401 200 200 200 200 403 200",
    "assets_images_list": "401 200 200 200 200 403 200",
    "assets_images_retrieve": "401 200 200 200 200 403 200",
    "assets_list": "401 200 200 200 200 403 200",
    "assets_partial_update": "401 403 403 200 403 403 200",
    "assets_retrieve": "401 200 200 200 200 403 200",
    "assets_update": "401 403 403 400 403 403 400",
    "auth_2fa_retrieve": "401 200 200 200 200 200 200",
    "auth_2fa_totp_confirm_create": "401 400 400 400 400 400 400",
    "auth_2fa_totp_disable_create": "401 400 400 400 400 400 400",
    "auth_2fa_totp_enrol_create": "401 200 200 200 200 200 200",
    "auth_2fa_verify_create": "400 400 400 400 400 400 400",
    "auth_login_create": "400 400 400 400 400 400 400",
    "auth_logout_all_create": "401 204 204 204 204 204 204",
    "auth_logout_create": "401 204 204 204 204 204 204",
    "auth_me_retrieve": "401 200 200 200 200 200 200",
    "auth_oidc_authorize_create": "404 404 404 404 404 404 404",
    "auth_oidc_list": "200 200 200 200 200 200 200",
    "auth_oidc_token_create": "404 404 404 404 404 404 404",
    "auth_otp_login_create": "400 400 400 400 400 400 400",
    "auth_otp_request_create": "400 400 400 400 400 400 400",
    "auth_password_change_create": "401 400 400 400 400 400 400",
    "auth_password_reset_confirm_create": "400 400 400 400 400 400 400",
    "auth_password_reset_create": "400 400 400 400 400 400 400",
    "auth_register_create": "401 403 403 403 403 403 400",
    "auth_sessions_list": "401 200 200 200 200 200 200",
    "auth_sessions_revoke_create": "401 204 404 404 404 404 404",
    "auth_supabase_token_create": "404 404 404 404 404 404 404",
    "auth_token_create": "400 400 400 400 400 400 400",
    "auth_token_refresh_create": "400 400 400 400 400 400 400",
    "auth_token_verify_create": "400 400 400 400 400 400 400",
    "auth_verify_email_confirm_create": "400 400 400 400 400 400 400",
    "auth_verify_email_request_create": "401 409 409 409 409 409 409",
    "broker_accounts_create": "401 403 403 400 403 403 400",
    "broker_accounts_destroy": "401 403 403 204 403 403 204",
    "broker_accounts_list": "401 200 200 200 200 403 200",
    "broker_accounts_partial_update": "401 403 403 200 403 403 200",
    "broker_accounts_retrieve": "401 200 404 200 200 403 200",
    "broker_accounts_update": "401 403 403 400 403 403 400",
    "broker_connections_check_create": "401 403 403 200 403 403 200",
    "broker_connections_create": "401 403 403 400 403 403 400",
    "broker_connections_destroy": "401 403 403 204 403 403 204",
    "broker_connections_list": "401 200 200 200 200 403 200",
    "broker_connections_partial_update": "401 403 403 200 403 403 200",
    "broker_connections_retrieve": "401 200 200 200 200 403 200",
    "broker_connections_update": "401 403 403 400 403 403 400",
    "clients_balances_retrieve": "401 200 404 200 200 403 200",
    "clients_create": "401 400 400 400 403 403 400",
    "clients_destroy": "401 403 403 204 403 403 204",
    "clients_income_retrieve": "401 200 404 200 200 403 200",
    "clients_list": "401 200 200 200 200 403 200",
    "clients_partial_update": "401 200 404 200 403 403 200",
    "clients_performance_retrieve": "401 200 404 200 200 403 200",
    "clients_positions_performance_retrieve": "401 200 404 200 200 403 200",
    "clients_positions_retrieve": "401 200 404 200 200 403 200",
    "clients_realized_gains_retrieve": "401 400 404 400 400 403 400",
    "clients_retrieve": "401 200 404 200 200 403 200",
    "clients_update": "401 400 404 400 403 403 400",
    "clients_valuation_retrieve": "401 200 404 200 200 403 200",
    "dividends_create": "401 400 400 400 403 403 400",
    "dividends_destroy": "401 204 404 204 403 403 204",
    "dividends_list": "401 200 200 200 200 403 200",
    "dividends_partial_update": "401 400 404 400 403 403 400",
    "dividends_retrieve": "401 200 404 200 200 403 200",
    "dividends_update": "401 400 404 400 403 403 400",
    "drift_list": "401 200 200 200 200 403 200",
    "fills_list": "401 200 200 200 200 403 200",
    "fills_retrieve": "401 200 404 200 200 403 200",
    "fx_rates_convert_retrieve": "401 400 400 400 400 403 400",
    "fx_rates_create": "401 403 403 400 403 403 400",
    "fx_rates_destroy": "401 403 403 204 403 403 204",
    "fx_rates_list": "401 200 200 200 200 403 200",
    "fx_rates_partial_update": "401 403 403 200 403 403 200",
    "fx_rates_retrieve": "401 200 200 200 200 403 200",
    "fx_rates_update": "401 403 403 400 403 403 400",
    "model_assignments_create": "401 400 400 403 403 403 400",
    "model_assignments_destroy": "401 204 404 403 403 403 204",
    "model_assignments_list": "401 200 200 200 200 403 200",
    "model_assignments_partial_update": "401 200 404 403 403 403 200",
    "model_assignments_retrieve": "401 200 404 200 200 403 200",
    "model_assignments_update": "401 400 404 403 403 403 400",
    "model_portfolios_create": "401 403 403 400 403 403 400",
    "model_portfolios_destroy": "401 403 403 204 403 403 204",
    "model_portfolios_list": "401 200 200 200 200 403 200",
    "model_portfolios_partial_update": "401 403 403 200 403 403 200",
    "model_portfolios_retrieve": "401 200 200 200 200 403 200",
    "model_portfolios_update": "401 403 403 400 403 403 400",
    "orders_cancel_create": "401 200 404 200 403 403 200",
    "orders_create": "401 400 400 403 403 403 400",
    "orders_list": "401 200 200 200 200 403 200",
    "orders_retrieve": "401 200 404 200 200 403 200",
    "orders_submit_create": "401 409 404 403 403 403 409",
    "portfolios_balances_retrieve": "401 200 404 200 200 403 200",
    "portfolios_create": "401 400 400 400 403 403 400",
    "portfolios_destroy": "401 403 403 204 403 403 204",
    "portfolios_income_retrieve": "401 200 404 200 200 403 200",
    "portfolios_list": "401 200 200 200 200 403 200",
    "portfolios_partial_update": "401 200 404 200 403 403 200",
    "portfolios_performance_retrieve": "401 200 404 200 200 403 200",
    "portfolios_positions_performance_retrieve": "401 200 404 200 200 403 200",
    "portfolios_positions_retrieve": "401 200 404 200 200 403 200",
    "portfolios_realized_gains_retrieve": "401 400 404 400 400 403 400",
    "portfolios_rebalance_proposal_create": "401 409 404 403 403 403 409",
    "portfolios_retrieve": "401 200 404 200 200 403 200",
    "portfolios_transfer_cash_create": "401 400 404 400 403 403 400",
    "portfolios_transfer_units_create": "401 400 404 400 403 403 400",
    "portfolios_update": "401 400 404 400 403 403 400",
    "portfolios_valuation_retrieve": "401 200 404 200 200 403 200",
    "prices_create": "401 403 403 400 403 403 400",
    "prices_destroy": "401 403 403 204 403 403 204",
    "prices_latest_list": "401 400 400 400 400 403 400",
    "prices_list": "401 200 200 200 200 403 200",
    "prices_partial_update": "401 403 403 200 403 403 200",
    "prices_retrieve": "401 200 200 200 200 403 200",
    "prices_update": "401 403 403 400 403 403 400",
    "rebalance_proposals_accept_create": "401 409 404 403 403 403 409",
    "rebalance_proposals_list": "401 200 200 200 200 403 200",
    "rebalance_proposals_retrieve": "401 200 404 200 200 403 200",
    "splits_create": "401 403 403 400 403 403 400",
    "splits_destroy": "401 403 403 204 403 403 204",
    "splits_list": "401 200 200 200 200 403 200",
    "splits_partial_update": "401 403 403 200 403 403 200",
    "splits_retrieve": "401 200 200 200 200 403 200",
    "splits_update": "401 403 403 400 403 403 400",
    "transactions_create": "401 400 400 400 403 403 400",
    "transactions_list": "401 200 200 200 200 403 200",
    "transactions_retrieve": "401 200 404 200 200 403 200",
    "transactions_reverse_create": "401 201 404 201 403 403 201",
    "users_create": "401 403 403 403 403 403 400",
    "users_list": "401 403 403 403 403 403 200",
    "users_partial_update": "401 403 403 403 403 403 200",
    "users_retrieve": "401 403 403 403 403 403 200",
    "users_update": "401 403 403 403 403 403 400",
}


def _operations() -> list[tuple[str, str, str]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return [
        (operation["operationId"], method, path)
        for path, item in schema["paths"].items()
        if path.startswith("/api/v1/")
        for method, operation in item.items()
        if method in METHODS
    ]


OPERATIONS = _operations()


def _expected(op_id: str) -> dict[str, int]:
    return dict(zip(ROLES, (int(status) for status in EXPECTED[op_id].split()), strict=True))


def test_the_walk_finds_the_api_operations_there_are() -> None:
    # Guards the walk: were it to find nothing, the matrix would pass by proving nothing.
    ids = {op_id for op_id, _, _ in OPERATIONS}
    assert len(OPERATIONS) > 100
    assert {"clients_retrieve", "orders_cancel_create", "portfolios_transfer_cash_create", "drift_list"} <= ids


def test_every_api_operation_has_an_expectation_for_every_role() -> None:
    missing = sorted({op_id for op_id, _, _ in OPERATIONS} - set(EXPECTED))
    assert not missing, f"add a row to EXPECTED (test_api_matrix.py) for each new API operation: {missing}"
    stale = sorted(set(EXPECTED) - {op_id for op_id, _, _ in OPERATIONS})
    assert not stale, f"EXPECTED names operations the API no longer has: {stale}"
    for op_id, row in EXPECTED.items():
        assert len(row.split()) == len(ROLES), op_id


def test_no_role_is_expected_to_meet_a_server_error() -> None:
    for op_id, row in EXPECTED.items():
        assert all(int(status) < 500 or status == "503" for status in row.split()), op_id


def test_advisor_b_is_never_let_into_an_object_path_advisor_a_may_use() -> None:
    # Reads the table itself: wherever A gets through to A's object, B answers as for a missing one (or is refused).
    for op_id, _, path in OPERATIONS:
        if "{id}" not in path or op_id not in EXPECTED or op_id in NOT_A_CLIENTS:
            continue
        expected = _expected(op_id)
        if expected["advisor_a"] < 400:
            assert expected["advisor_b"] in (403, 404), op_id


def test_anonymous_is_refused_everything_but_the_ways_in() -> None:
    for op_id, _, _ in OPERATIONS:
        if op_id in EXPECTED and op_id not in PUBLIC:
            assert _expected(op_id)["anonymous"] == 401, op_id


def test_staff_in_no_group_reaches_no_client_data() -> None:
    for op_id, _, path in OPERATIONS:
        if op_id in EXPECTED and "{id}" in path and path.split("/")[3] in CLIENT_DATA_PREFIXES:
            assert _expected(op_id)["nobody"] in (403, 404), op_id


# The ways in (sign-in, registration, resets): answered without credentials.
PUBLIC = {
    "auth_login_create",
    "auth_token_create",
    "auth_token_refresh_create",
    "auth_token_verify_create",
    "auth_supabase_token_create",
    "auth_oidc_list",
    "auth_oidc_authorize_create",
    "auth_oidc_token_create",
    "auth_otp_login_create",
    "auth_otp_request_create",
    "auth_password_reset_create",
    "auth_password_reset_confirm_create",
    "auth_verify_email_confirm_create",
    "auth_2fa_verify_create",
}
# Object paths whose object is the firm's (reference data, users), not a client's: B may read them as A may.
NOT_A_CLIENTS = {op_id for op_id, _, path in OPERATIONS if path.split("/")[3] not in ("clients", "portfolios")}
CLIENT_DATA_PREFIXES = {
    "clients",
    "portfolios",
    "allocations",
    "transactions",
    "dividends",
    "orders",
    "fills",
    "broker-accounts",
    "model-assignments",
    "rebalance-proposals",
}


def _users() -> dict[str, Any]:
    return {
        "anonymous": None,
        "advisor_a": AdvisorFactory(),
        "advisor_b": AdvisorFactory(),
        "operations": OperationsFactory(),
        "auditor": AuditorFactory(),
        "nobody": UserFactory(),
        "superuser": SuperuserFactory(),
    }


def _object_for(model: type[models.Model], advisor_a: Any) -> models.Model:
    if owner_path(model) is not None:
        return ROW_FOR_CLIENT[model](ClientFactory(advisor=advisor_a))
    if model is LoginSession:
        return LoginSession.objects.filter(user=advisor_a).earliest("created_at")
    return OBJECT[model._meta.label](advisor_a)


def _concrete_path(path: str, advisor_a: Any) -> str:
    """The operation's path with advisor A's objects (or reference data) in it."""
    params = set(re.findall(r"{(\w+)}", path))
    values: dict[str, Any] = {}
    if "id" in params:
        view = resolve(path.replace("{id}", "1").replace("{asset_pk}", "1").replace("{asset_id}", "1")).func
        cls = getattr(view, "cls", None)
        model: type[models.Model]
        if path.startswith("/api/v1/auth/sessions/"):
            model = LoginSession  # the viewset's own queryset is empty: it picks the caller's sessions
        elif cls is not None and issubclass(cls, ViewSetMixin):
            model = cls.queryset.model
        else:  # an object's view outside the router (`clients/{id}/balances/`): the object of its prefix
            model = {"clients": Client, "portfolios": Portfolio}[path.split("/")[3]]
        obj = _object_for(model, advisor_a)
        values["id"] = obj.pk
        if "asset_pk" in params:
            asset = getattr(obj, "asset", None) or obj.image.asset  # type: ignore[attr-defined]
            values["asset_pk"] = asset.pk
    asset: Any = AssetFactory()  # anyone with the view permission may see an asset
    if "asset_pk" in params and "asset_pk" not in values:  # an asset's own list of images or descriptions
        values["asset_pk"] = asset.pk
    if "asset_id" in params:
        values["asset_id"] = asset.pk
    if "name" in params:
        values["name"] = "no-such-provider"
    return re.sub(r"{(\w+)}", lambda match: str(values[match.group(1)]), path)


def _fresh_cache() -> None:
    cache.clear()
    forget_estimates()


@pytest.mark.parametrize(("op_id", "method", "path"), [pytest.param(*op, id=op[0]) for op in OPERATIONS])
def test_each_role_gets_the_status_the_table_says_on_every_api_operation(op_id: str, method: str, path: str) -> None:
    users = _users()
    tokens = {role: access_token_for(user) for role, user in users.items() if user is not None}
    url = _concrete_path(path, users["advisor_a"])
    body = b"" if method in ("get", "delete") else json.dumps({}).encode()

    got: dict[str, int] = {}
    for role in ROLES:
        headers = {"Accept": "application/json"}
        if role in tokens:
            headers["Authorization"] = f"Bearer {tokens[role]}"
        _fresh_cache()
        with transaction.atomic():
            response = DjangoClient(raise_request_exception=False).generic(
                method.upper(), url, body, content_type="application/json", headers=headers
            )
            transaction.set_rollback(True)
        got[role] = response.status_code

    row = " ".join(str(got[role]) for role in ROLES)
    assert op_id in EXPECTED, f'{op_id} has no row in EXPECTED; it answers "{op_id}": "{row}",'
    assert got == _expected(op_id), f'{method.upper()} {url}: "{op_id}": "{row}", expected "{EXPECTED[op_id]}"'
