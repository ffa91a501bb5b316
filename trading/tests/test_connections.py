"""Broker connections: credentials encrypted and write-only in every door, managed by Operations, tested without an
order; orders go through a connection where their portfolio has an account; and the secret is found nowhere."""

import datetime
import io
import logging
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.contrib.admin.models import LogEntry
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import connection as db
from django.utils import timezone

from clients.tests.factories import ClientFactory, PortfolioFactory, main_portfolio
from holdings.tests.factories import AssetFactory, PriceFactory
from ledger.tests.factories import TransactionFactory
from portfolio_site.crypto import decrypt
from portfolio_site.imports.formats import FORMATS, format_for_model
from portfolio_site.jobs.models import JobRun
from portfolio_site.testing import admin_messages, page_queries
from trading import services
from trading.brokers.alpaca import AlpacaBroker
from trading.connections import broker_account_save, broker_for, connection_check
from trading.models import BrokerAccount, BrokerConnection, Order
from trading.tests.alpaca_server import FakeAlpaca
from trading.tests.factories import (
    AlpacaConnectionFactory,
    BrokerAccountFactory,
    BrokerConnectionFactory,
    paper_account,
)

pytestmark = pytest.mark.django_db

D = Decimal
TODAY = timezone.localdate()
KEY = "PK-LEAKCHECK-KEY-4242"
SECRET = "sk-LEAKCHECK-7d1f3e9a0b"
ACCOUNT = "PA1234567"  # the local Alpaca's account number


@pytest.fixture(autouse=True)
def _brokers(settings: Any) -> None:
    settings.TRADING_BROKER_KINDS = {
        "paper": {"BACKEND": "trading.brokers.paper.PaperBroker", "OPTIONS": {}},
        "alpaca": {
            "BACKEND": "trading.brokers.alpaca.AlpacaBroker",
            "OPTIONS": {"timeout": 2, "max_retries": 1, "max_retry_wait": 0.05, "cancel_wait": 0.2},
        },
    }


@pytest.fixture
def alpaca() -> Iterator[FakeAlpaca]:
    fake = FakeAlpaca(api_key=KEY, api_secret=SECRET).start()
    yield fake
    fake.stop()


@pytest.fixture
def alpaca_connection(alpaca: FakeAlpaca) -> BrokerConnection:
    return AlpacaConnectionFactory(name="Alpaca paper", base_url=alpaca.base_url, key=KEY, secret=SECRET)


@pytest.fixture
def portfolio(advisor: Any) -> Any:
    portfolio = main_portfolio(ClientFactory(advisor=advisor))
    TransactionFactory(portfolio=portfolio, currency="USD", amount=D("10000"), date=TODAY - datetime.timedelta(days=10))
    return portfolio


@pytest.fixture
def asset() -> Any:
    asset = AssetFactory(ticker="ACME", currency="USD")
    PriceFactory(asset=asset, date=TODAY - datetime.timedelta(days=1), close=D("100"))
    return asset


def alpaca_body(alpaca: FakeAlpaca, **extra: Any) -> dict[str, Any]:
    return {
        "name": "Alpaca paper",
        "kind": "alpaca",
        "environment": "paper",
        "base_url": alpaca.base_url,
        "api_key": KEY,
        "api_secret": SECRET,
        **extra,
    }


# --- The API: write-only credentials ------------------------------------------------------------------------


def test_operations_add_a_connection_whose_credentials_are_stored_encrypted_and_never_shown(
    operations: Any, api: Any, alpaca: FakeAlpaca
) -> None:
    created = api(operations).post("/api/v1/broker-connections/", alpaca_body(alpaca), format="json")

    assert created.status_code == 201, created.content
    body = created.json()
    assert "api_key" not in body
    assert "api_secret" not in body
    assert body["credentials_set_at"] is not None
    stored = BrokerConnection.objects.get(pk=body["id"])
    assert KEY not in stored.api_key
    assert SECRET not in stored.api_secret
    assert (decrypt(stored.api_key), decrypt(stored.api_secret)) == (KEY, SECRET)
    for url in ("/api/v1/broker-connections/", f"/api/v1/broker-connections/{stored.pk}/"):
        shown = api(operations).get(url)
        assert shown.status_code == 200
        assert KEY not in shown.content.decode()
        assert SECRET not in shown.content.decode()


def test_changing_a_connection_keeps_its_credentials_unless_both_are_given_again(
    operations: Any, api: Any, alpaca_connection: BrokerConnection
) -> None:
    url = f"/api/v1/broker-connections/{alpaca_connection.pk}/"
    set_at = alpaca_connection.credentials_set_at

    renamed = api(operations).patch(url, {"name": "Alpaca (paper)"}, format="json")
    assert renamed.status_code == 200, renamed.content
    alpaca_connection.refresh_from_db()
    assert alpaca_connection.credentials() == (KEY, SECRET)
    assert alpaca_connection.credentials_set_at == set_at

    replaced = api(operations).patch(url, {"api_key": "PK-NEW-0001", "api_secret": "sk-new-0001"}, format="json")
    assert replaced.status_code == 200, replaced.content
    alpaca_connection.refresh_from_db()
    assert alpaca_connection.credentials() == ("PK-NEW-0001", "sk-new-0001")
    assert alpaca_connection.credentials_set_at > set_at
    assert "sk-new-0001" not in replaced.content.decode()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({"api_key": None, "api_secret": None}, "api_key", id="remote-without-credentials"),
        pytest.param({"api_secret": "only-the-secret", "api_key": None}, "api_key", id="secret-without-key"),
        pytest.param({"api_key": "   ", "api_secret": "   "}, "api_key", id="blank-credentials"),
        pytest.param({"kind": "paper"}, "api_key", id="paper-with-credentials"),
        pytest.param(
            {"kind": "paper", "environment": "live", "api_key": None, "api_secret": None}, None, id="live-paper"
        ),
        pytest.param({"base_url": "ftp://example.com"}, "base_url", id="not-http"),
        pytest.param({"name": ""}, "name", id="no-name"),
    ],
)
def test_a_bad_connection_gets_a_400_naming_the_field(
    body: dict[str, Any], field: str | None, operations: Any, api: Any, alpaca: FakeAlpaca
) -> None:
    request = {key: value for key, value in {**alpaca_body(alpaca), **body}.items() if value is not None}

    refused = api(operations).post("/api/v1/broker-connections/", request, format="json")

    assert refused.status_code == 400, refused.content
    if field is not None:
        assert field in refused.json(), refused.content
    assert SECRET not in refused.content.decode()
    assert not BrokerConnection.objects.exists()


def test_a_connection_never_changes_its_kind(operations: Any, api: Any) -> None:
    paper = BrokerConnectionFactory()

    refused = api(operations).patch(f"/api/v1/broker-connections/{paper.pk}/", {"kind": "alpaca"}, format="json")

    assert refused.status_code == 400
    assert "kind" in refused.json()


@pytest.mark.parametrize("role", ["advisor", "auditor"])
def test_advisors_and_auditors_read_connections_but_cannot_manage_or_test_them(
    role: str, request: pytest.FixtureRequest, api: Any, alpaca: FakeAlpaca, alpaca_connection: BrokerConnection
) -> None:
    user = request.getfixturevalue(role)
    url = f"/api/v1/broker-connections/{alpaca_connection.pk}/"

    assert api(user).get("/api/v1/broker-connections/").status_code == 200
    assert (
        api(user).post("/api/v1/broker-connections/", alpaca_body(alpaca, name="x"), format="json").status_code == 403
    )
    assert api(user).patch(url, {"api_key": "a", "api_secret": "b"}, format="json").status_code == 403
    assert api(user).delete(url).status_code == 403
    assert api(user).post(f"{url}check/").status_code == 403
    assert alpaca.requests == []
    alpaca_connection.refresh_from_db()
    assert alpaca_connection.credentials() == (KEY, SECRET)


def test_staff_in_no_role_see_no_connection(nobody: Any, api: Any) -> None:
    BrokerConnectionFactory()

    assert api(nobody).get("/api/v1/broker-connections/").status_code == 403


def test_a_connection_orders_went_through_is_not_deleted(operations: Any, api: Any) -> None:
    order = OrderFactoryForConnection()

    refused = api(operations).delete(f"/api/v1/broker-connections/{order.connection_id}/")

    assert refused.status_code == 409
    assert BrokerConnection.objects.filter(pk=order.connection_id).exists()


def OrderFactoryForConnection() -> Order:
    from trading.tests.factories import OrderFactory

    order: Order = OrderFactory()
    return order


# --- Testing a connection -----------------------------------------------------------------------------------


def test_checking_a_connection_reads_the_account_and_places_nothing(
    operations: Any, api: Any, alpaca: FakeAlpaca, alpaca_connection: BrokerConnection
) -> None:
    checked = api(operations).post(f"/api/v1/broker-connections/{alpaca_connection.pk}/check/")

    assert checked.status_code == 200, checked.content
    assert checked.json()["ok"] is True
    assert ACCOUNT in checked.json()["message"]
    assert alpaca.requests == [("GET", "/v2/account")]
    alpaca_connection.refresh_from_db()
    assert (alpaca_connection.last_check_ok, alpaca_connection.last_checked_at is not None) == (True, True)


@pytest.mark.parametrize(
    ("status", "says"),
    [(401, "refused this connection's API key and secret"), (403, "refused"), (503, "503"), (429, "429")],
)
def test_a_failing_check_says_why_and_is_recorded(
    status: int, says: str, alpaca: FakeAlpaca, alpaca_connection: BrokerConnection
) -> None:
    alpaca.fail_next(status, times=3)

    result = connection_check(connection=alpaca_connection)

    assert result.ok is False
    assert says in result.message
    assert SECRET not in result.message
    assert KEY not in result.message
    alpaca_connection.refresh_from_db()
    assert (alpaca_connection.last_check_ok, alpaca_connection.last_check_message) == (False, result.message)


def test_a_paper_connection_checks_without_a_network(operations: Any, api: Any) -> None:
    paper = BrokerConnectionFactory()

    checked = api(operations).post(f"/api/v1/broker-connections/{paper.pk}/check/")

    assert checked.status_code == 200
    assert checked.json()["ok"] is True


def test_a_replaced_secret_is_used_from_the_next_call_on(
    alpaca: FakeAlpaca, alpaca_connection: BrokerConnection
) -> None:
    assert connection_check(connection=alpaca_connection).ok
    alpaca_connection.set_credentials(api_key=KEY, api_secret="sk-revoked")
    alpaca_connection.save()

    assert not connection_check(connection=alpaca_connection).ok
    assert broker_for(alpaca_connection) is broker_for(alpaca_connection)


# --- The admin ----------------------------------------------------------------------------------------------


def test_operations_add_a_connection_in_the_admin_and_its_page_never_shows_the_secret(
    client: Any, operations: Any, alpaca: FakeAlpaca
) -> None:
    client.force_login(operations)
    form = {
        "name": "Alpaca paper",
        "kind": "alpaca",
        "environment": "paper",
        "base_url": alpaca.base_url,
        "is_active": "on",
        "new_api_key": KEY,
        "new_api_secret": SECRET,
    }

    added = client.post("/admin/trading/brokerconnection/add/", form, follow=True)

    assert added.status_code == 200
    connection = BrokerConnection.objects.get()
    assert connection.credentials() == (KEY, SECRET)
    page = client.get(f"/admin/trading/brokerconnection/{connection.pk}/change/").content.decode()
    assert "Set on " in page
    assert SECRET not in page
    assert KEY not in page
    assert SECRET not in added.content.decode()


def test_an_admin_change_with_empty_secrets_keeps_them_and_with_new_ones_replaces_them(
    client: Any, operations: Any, alpaca_connection: BrokerConnection
) -> None:
    client.force_login(operations)
    url = f"/admin/trading/brokerconnection/{alpaca_connection.pk}/change/"
    form = {
        "name": "Renamed",
        "environment": "paper",
        "base_url": alpaca_connection.base_url,
        "is_active": "on",
        "new_api_key": "",
        "new_api_secret": "",
    }

    client.post(url, form)
    alpaca_connection.refresh_from_db()
    assert (alpaca_connection.name, alpaca_connection.credentials()) == ("Renamed", (KEY, SECRET))

    half = client.post(url, {**form, "new_api_secret": "sk-only"})
    assert "Give the API key and secret together." in " ".join(admin_messages(half)) + half.content.decode()
    alpaca_connection.refresh_from_db()
    assert alpaca_connection.credentials() == (KEY, SECRET)

    client.post(url, {**form, "new_api_key": "PK-2-0000", "new_api_secret": "sk-2-0000"})
    alpaca_connection.refresh_from_db()
    assert alpaca_connection.credentials() == ("PK-2-0000", "sk-2-0000")


def test_test_connection_in_the_admin_reports_each_connection(
    client: Any, operations: Any, alpaca: FakeAlpaca, alpaca_connection: BrokerConnection
) -> None:
    broken = AlpacaConnectionFactory(name="Alpaca wrong key", base_url=alpaca.base_url, key=KEY, secret="sk-wrong")
    client.force_login(operations)

    response = client.post(
        "/admin/trading/brokerconnection/",
        {"action": "check_selected", "_selected_action": [alpaca_connection.pk, broken.pk]},
        follow=True,
    )

    shown = admin_messages(response)
    assert any(m.startswith("Alpaca paper: Alpaca account PA1234567") for m in shown), shown
    assert any(m.startswith("Alpaca wrong key: Alpaca refused") for m in shown), shown
    assert not any("sk-wrong" in m or SECRET in m for m in shown)
    assert [r[0] for r in alpaca.requests] == ["GET", "GET"]


# --- Orders choose a connection -----------------------------------------------------------------------------


def test_an_order_goes_to_the_portfolios_only_account_when_none_is_named(
    advisor: Any, portfolio: Any, asset: Any
) -> None:
    account = paper_account(portfolio)

    order = services.order_create(actor=advisor, portfolio=portfolio, asset=asset, side="buy", quantity=D("1"))

    assert (order.connection, order.account_id) == (account.connection, account.account_id)


def test_an_order_in_a_portfolio_with_no_account_is_refused_on_connection(
    advisor: Any, portfolio: Any, asset: Any, api: Any
) -> None:
    body = {"portfolio": portfolio.pk, "asset": asset.pk, "side": "buy", "quantity": "1"}

    refused = api(advisor).post("/api/v1/orders/", body, format="json")

    assert refused.status_code == 400
    assert "no account" in refused.json()["connection"][0]


def test_an_order_in_a_portfolio_with_several_accounts_names_its_connection(
    advisor: Any, portfolio: Any, asset: Any, api: Any, alpaca_connection: BrokerConnection
) -> None:
    paper_account(portfolio)
    BrokerAccountFactory(portfolio=portfolio, connection=alpaca_connection, account_id=ACCOUNT)
    body = {"portfolio": portfolio.pk, "asset": asset.pk, "side": "buy", "quantity": "1"}

    unnamed = api(advisor).post("/api/v1/orders/", body, format="json")
    named = api(advisor).post("/api/v1/orders/", {**body, "connection": alpaca_connection.pk}, format="json")

    assert unnamed.status_code == 400
    assert "choose" in unnamed.json()["connection"][0]
    assert named.status_code == 201, named.content
    assert (named.json()["connection"], named.json()["account_id"]) == (alpaca_connection.pk, ACCOUNT)


def test_an_inactive_connection_takes_no_new_orders(advisor: Any, portfolio: Any, asset: Any, api: Any) -> None:
    account = paper_account(portfolio)
    BrokerConnection.objects.filter(pk=account.connection_id).update(is_active=False)
    body = {"portfolio": portfolio.pk, "asset": asset.pk, "side": "buy", "quantity": "1"}

    refused = api(advisor).post("/api/v1/orders/", {**body, "connection": account.connection_id}, format="json")

    assert refused.status_code == 400
    assert "inactive" in refused.json()["connection"][0]


def test_an_order_through_alpaca_is_placed_filled_and_recorded(
    advisor: Any,
    portfolio: Any,
    asset: Any,
    api: Any,
    alpaca: FakeAlpaca,
    alpaca_connection: BrokerConnection,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    BrokerAccountFactory(portfolio=portfolio, connection=alpaca_connection, account_id=ACCOUNT)
    body = {"portfolio": portfolio.pk, "asset": asset.pk, "side": "buy", "quantity": "2", "submit": True}

    with django_capture_on_commit_callbacks(execute=True):
        created = api(advisor).post("/api/v1/orders/", body, format="json")
    assert created.status_code == 201, created.content
    order = Order.objects.get(pk=created.json()["id"])
    assert order.status == Order.Status.SUBMITTED
    [sent] = alpaca.orders.values()
    assert sent["client_order_id"] == order.client_order_id

    alpaca.fill(order.client_order_id, price=D("101.25"))
    services.order_sync(order_id=order.pk)

    order.refresh_from_db()
    assert order.status == Order.Status.FILLED
    assert [(fill.quantity, fill.price) for fill in order.fills.all()] == [(D("2"), D("101.25"))]


def test_an_order_for_another_account_than_the_keys_is_rejected_by_the_adapter(
    advisor: Any,
    portfolio: Any,
    asset: Any,
    alpaca: FakeAlpaca,
    alpaca_connection: BrokerConnection,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    BrokerAccountFactory(portfolio=portfolio, connection=alpaca_connection, account_id="PA-SOMEONE-ELSE")
    order = services.order_create(actor=advisor, portfolio=portfolio, asset=asset, side="buy", quantity=D("1"))

    with django_capture_on_commit_callbacks(execute=True):
        services.order_submit(actor=advisor, order=order)

    order.refresh_from_db()
    assert order.status == Order.Status.REJECTED
    assert "PA-SOMEONE-ELSE" in order.broker_message
    assert alpaca.orders == {}


# --- The secret is found nowhere ----------------------------------------------------------------------------


def _every_stored_text() -> str:
    """Every cell of every table, as text: where a secret stored in plaintext anywhere would be found."""
    cells = []
    with db.cursor() as cursor:
        for table in db.introspection.table_names():
            cursor.execute(f"SELECT * FROM {db.ops.quote_name(table)}")
            cells.extend(str(cell) for row in cursor.fetchall() for cell in row)
    return "\n".join(cells)


def test_the_credentials_appear_in_no_response_log_job_history_export_or_table(
    client: Any,
    operations: Any,
    advisor: Any,
    portfolio: Any,
    asset: Any,
    api: Any,
    alpaca: FakeAlpaca,
    caplog: pytest.LogCaptureFixture,
    django_capture_on_commit_callbacks: Callable[..., Any],
) -> None:
    caplog.set_level(logging.DEBUG)
    seen: list[str] = []
    # Managed through both doors, replaced, tested (once failing), and traded through: every path a secret takes.
    created = api(operations).post("/api/v1/broker-connections/", alpaca_body(alpaca), format="json")
    seen.append(created.content.decode())
    connection = BrokerConnection.objects.get(pk=created.json()["id"])
    client.force_login(operations)
    url = f"/admin/trading/brokerconnection/{connection.pk}/change/"
    admin_form = {"name": "Alpaca", "environment": "paper", "base_url": alpaca.base_url, "is_active": "on"}
    seen.append(
        client.post(url, {**admin_form, "new_api_key": KEY, "new_api_secret": SECRET}, follow=True).content.decode()
    )
    seen.append(client.get(url).content.decode())
    seen.append(client.get(f"/admin/trading/brokerconnection/{connection.pk}/history/").content.decode())
    seen.append(client.get("/admin/trading/brokerconnection/").content.decode())
    alpaca.fail_next(401)
    seen.append(api(operations).post(f"/api/v1/broker-connections/{connection.pk}/check/").content.decode())
    seen.append(api(operations).post(f"/api/v1/broker-connections/{connection.pk}/check/").content.decode())
    BrokerAccountFactory(portfolio=portfolio, connection=connection, account_id=ACCOUNT)
    body = {"portfolio": portfolio.pk, "asset": asset.pk, "side": "buy", "quantity": "1", "submit": True}
    with django_capture_on_commit_callbacks(execute=True):
        placed = api(advisor).post("/api/v1/orders/", body, format="json")
    seen.append(placed.content.decode())
    alpaca.fill(placed.json()["client_order_id"])
    services.order_sync(order_id=placed.json()["id"])
    seen.append(api(advisor).get(f"/api/v1/orders/{placed.json()['id']}/").content.decode())
    seen.append(api(operations).get("/api/v1/broker-connections/").content.decode())
    for format_class in FORMATS.values():
        out = io.StringIO()
        call_command("export", format_class.kind, stdout=out)
        seen.append(out.getvalue())
    seen.append(caplog.text)
    seen.extend(record.getMessage() for record in caplog.records)
    seen.extend(str(entry.change_message) for entry in LogEntry.objects.all())
    seen.extend(f"{run.arguments} {run.error}" for run in JobRun.objects.all())
    seen.append(_every_stored_text())

    assert format_for_model(BrokerConnection) is None
    assert connection.history.count() >= 2
    assert connection.orders.get().status == Order.Status.FILLED
    for text in seen:
        assert SECRET not in text
        assert KEY not in text
    assert BrokerAccount.objects.get().account_id == ACCOUNT


# --- Lists stay a fixed number of queries -------------------------------------------------------------------


def test_broker_account_and_connection_lists_query_count_does_not_grow_with_rows(
    advisor: Any, api: Any, assert_list_queries_constant: Callable[..., None]
) -> None:
    client = ClientFactory(advisor=advisor)

    def accounts(n: int) -> None:
        for _ in range(n):
            paper_account(PortfolioFactory(client=client), BrokerConnectionFactory(name=f"Paper {uuid.uuid4()}"))

    assert_list_queries_constant(api(advisor), "/api/v1/broker-accounts/", accounts)
    assert_list_queries_constant(
        api(advisor),
        "/api/v1/broker-connections/",
        lambda n: [BrokerConnectionFactory(name=f"Paper {uuid.uuid4()}") for _ in range(n)],
    )


@pytest.mark.parametrize("page", ["brokerconnection", "brokeraccount"])
def test_broker_changelists_load_with_the_same_query_count_for_few_and_many_rows(
    page: str, client: Any, superuser: Any, count_queries: Callable[..., int]
) -> None:
    client.force_login(superuser)
    url = f"/admin/trading/{page}/"

    def add(n: int) -> None:
        for _ in range(n):
            paper_account(PortfolioFactory(), BrokerConnectionFactory(name=f"Paper {uuid.uuid4()}"))

    add(3)
    page_queries(client, count_queries, url)
    few = page_queries(client, count_queries, url)
    add(20)
    assert page_queries(client, count_queries, url) == few


# --- What an attacker would try -----------------------------------------------------------------------------


def test_pointing_a_connection_elsewhere_needs_its_credentials_again(
    operations: Any, api: Any, alpaca: FakeAlpaca, alpaca_connection: BrokerConnection
) -> None:
    """Otherwise whoever may change a connection could send its stored secret to a server of their own."""
    url = f"/api/v1/broker-connections/{alpaca_connection.pk}/"
    elsewhere = "http://127.0.0.2:9/"

    moved = api(operations).patch(url, {"base_url": elsewhere}, format="json")
    live = api(operations).patch(url, {"environment": "live"}, format="json")
    with_keys = api(operations).patch(
        url, {"base_url": elsewhere, "api_key": "PK-THEIR-OWN", "api_secret": "sk-their-own"}, format="json"
    )

    assert (moved.status_code, live.status_code) == (400, 400)
    assert "api_key" in moved.json()
    assert with_keys.status_code == 200, with_keys.content
    alpaca_connection.refresh_from_db()
    assert alpaca_connection.credentials() == ("PK-THEIR-OWN", "sk-their-own")


@pytest.mark.parametrize(
    ("base_url", "accepted"),
    [
        ("https://broker.example.com", True),
        ("http://127.0.0.1:8080", True),
        ("http://localhost:8080", True),
        ("http://broker.example.com", False),
        ("http://10.0.0.5", False),
    ],
)
def test_credentials_travel_over_https_or_on_this_machine_only(
    base_url: str, accepted: bool, operations: Any, api: Any, alpaca: FakeAlpaca
) -> None:
    answer = api(operations).post("/api/v1/broker-connections/", alpaca_body(alpaca, base_url=base_url), format="json")

    assert answer.status_code == (201 if accepted else 400), answer.content


@pytest.mark.parametrize(
    "secret",
    ["sk-LEAK\nCHECK-7d1f3e9a0b", "sk-with space-12345", "sk-\u2019-not-ascii-123", "short"],
    ids=["newline", "space", "non-ascii", "too-short"],
)
def test_a_credential_that_could_not_travel_in_a_header_is_refused(
    secret: str, operations: Any, api: Any, alpaca: FakeAlpaca
) -> None:
    refused = api(operations).post("/api/v1/broker-connections/", alpaca_body(alpaca, api_secret=secret), format="json")

    assert refused.status_code == 400
    assert "api_secret" in refused.json()
    assert secret not in refused.content.decode()


def test_credentials_no_key_decrypts_fail_the_check_and_refuse_a_submission_without_a_500(
    advisor: Any,
    operations: Any,
    api: Any,
    portfolio: Any,
    asset: Any,
    alpaca_connection: BrokerConnection,
    settings: Any,
) -> None:
    BrokerAccountFactory(portfolio=portfolio, connection=alpaca_connection, account_id=ACCOUNT)
    draft = services.order_create(actor=advisor, portfolio=portfolio, asset=asset, side="buy", quantity=D("1"))
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]

    checked = api(operations).post(f"/api/v1/broker-connections/{alpaca_connection.pk}/check/")
    submitted = api(advisor).post(f"/api/v1/orders/{draft.pk}/submit/")

    assert checked.status_code == 200
    assert checked.json()["ok"] is False
    assert "set them again" in checked.json()["message"]
    assert submitted.status_code == 409
    draft.refresh_from_db()
    assert draft.status == Order.Status.DRAFT


def test_a_kind_this_server_is_not_configured_for_is_refused(
    operations: Any, api: Any, alpaca: FakeAlpaca, settings: Any
) -> None:
    del settings.TRADING_BROKER_KINDS["alpaca"]

    refused = api(operations).post("/api/v1/broker-connections/", alpaca_body(alpaca), format="json")

    assert refused.status_code == 400
    assert "kind" in refused.json()


def test_a_draft_is_not_submitted_once_its_connection_is_switched_off_or_its_account_closed(
    advisor: Any, portfolio: Any, asset: Any, api: Any
) -> None:
    account = paper_account(portfolio)
    first = services.order_create(actor=advisor, portfolio=portfolio, asset=asset, side="buy", quantity=D("1"))
    second = services.order_create(actor=advisor, portfolio=portfolio, asset=asset, side="buy", quantity=D("1"))

    BrokerConnection.objects.filter(pk=account.connection_id).update(is_active=False)
    switched_off = api(advisor).post(f"/api/v1/orders/{first.pk}/submit/")
    BrokerConnection.objects.filter(pk=account.connection_id).update(is_active=True)
    account.delete()
    closed = api(advisor).post(f"/api/v1/orders/{second.pk}/submit/")

    assert switched_off.status_code == 409
    assert "inactive" in switched_off.json()["detail"]
    assert closed.status_code == 409
    assert set(Order.objects.values_list("status", flat=True)) == {Order.Status.DRAFT}


def test_the_browsable_api_never_refills_a_refused_form_with_the_secret(
    operations: Any, api: Any, alpaca: FakeAlpaca, alpaca_connection: BrokerConnection
) -> None:
    duplicate = alpaca_body(alpaca, name=alpaca_connection.name)

    page = api(operations).post("/api/v1/broker-connections/", duplicate, HTTP_ACCEPT="text/html")

    assert page.status_code == 400
    assert SECRET not in page.content.decode()
    assert KEY not in page.content.decode()


def test_only_those_who_test_connections_read_what_the_last_check_said(
    advisor: Any, operations: Any, api: Any, alpaca_connection: BrokerConnection
) -> None:
    connection_check(connection=alpaca_connection)
    url = f"/api/v1/broker-connections/{alpaca_connection.pk}/"

    assert ACCOUNT in api(operations).get(url).json()["last_check_message"]
    assert api(advisor).get(url).json()["last_check_message"] == ""
    assert api(advisor).get(url).json()["last_check_ok"] is True


def test_a_check_answer_without_an_account_number_is_not_taken_for_the_account(alpaca: FakeAlpaca) -> None:
    broker = AlpacaBroker(name="a", api_key=KEY, api_secret=SECRET, base_url=alpaca.base_url, timeout=2)
    alpaca.account_number = ""

    broker.check()
    alpaca.account_number = ACCOUNT

    assert broker._trading_account() == ACCOUNT


def test_a_stored_credential_the_http_client_refuses_is_an_outage_whose_message_quotes_nothing(
    alpaca: FakeAlpaca, caplog: pytest.LogCaptureFixture
) -> None:
    """Written before the credential rules existed (or straight into the table): the request cannot be sent."""
    broken = AlpacaConnectionFactory(base_url=alpaca.base_url, key=KEY, secret="sk-LEAK\nCHECK-7d1f3e9a0b")

    result = connection_check(connection=broken)

    assert result.ok is False
    assert "CHECK-7d1f3e9a0b" not in result.message
    assert "CHECK-7d1f3e9a0b" not in caplog.text


def test_an_account_stays_with_its_portfolio_through_every_door(
    client: Any, operations: Any, api: Any, portfolio: Any
) -> None:
    account = paper_account(portfolio)
    other = PortfolioFactory(client=portfolio.client)

    through_api = api(operations).patch(
        f"/api/v1/broker-accounts/{account.pk}/", {"portfolio": other.pk}, format="json"
    )
    client.force_login(operations)
    client.post(
        f"/admin/trading/brokeraccount/{account.pk}/change/",
        {"connection": account.connection_id, "portfolio": other.pk, "account_id": account.account_id},
    )
    account.portfolio = other

    assert through_api.status_code == 400
    assert "portfolio" in through_api.json()
    with pytest.raises(ValidationError, match="stays with its portfolio"):
        broker_account_save(account=account)
    assert BrokerAccount.objects.get().portfolio_id == portfolio.pk
