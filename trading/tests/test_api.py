"""The orders and fills endpoints: what each role may do, what each sees, the errors, the filters and their cost."""

import datetime
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.utils import timezone
from rest_framework.test import APIClient

from accounts.models import User
from accounts.tests.factories import OperationsFactory, UserFactory
from clients.tests.factories import ClientFactory, PortfolioFactory, main_portfolio
from holdings.tests.factories import AssetFactory, PriceFactory
from ledger.selectors import cash_hold_amount
from ledger.tests.factories import TransactionFactory
from portfolio_site.testing import run_at_once
from portfolio_site.tests.test_schema import as_user, openapi, schema_document  # noqa: F401 (fixtures)
from trading import services
from trading.models import Fill, Order
from trading.tests.factories import BrokerConnectionFactory, FillFactory, OrderEventFactory, OrderFactory, paper_account

pytestmark = pytest.mark.django_db

D = Decimal
Status = Order.Status
TODAY = timezone.localdate()


@pytest.fixture(autouse=True)
def _paper_broker(settings: Any) -> Any:
    """A paper broker with a plain fee schedule (0.1%, at least 1.00), each test's own."""
    settings.TRADING_BROKER_KINDS = {
        "paper": {"BACKEND": "trading.brokers.paper.PaperBroker", "OPTIONS": {"fee_rate": "0.001", "minimum_fee": "1"}}
    }
    settings.TRADING_MARKET_ORDER_BUFFER = "0.05"
    return settings


def broker_offline(settings: Any) -> None:
    settings.TRADING_BROKER_KINDS["paper"]["OPTIONS"]["offline"] = True


@pytest.fixture
def asset(db: None) -> Any:
    asset = AssetFactory(ticker="ACME", currency="USD")
    PriceFactory(asset=asset, date=TODAY - datetime.timedelta(days=1), close=D("100"))
    return asset


@pytest.fixture
def portfolio(advisor: Any) -> Any:
    """Advisor's client's portfolio with 10,000 USD."""
    portfolio = main_portfolio(ClientFactory(advisor=advisor))
    TransactionFactory(portfolio=portfolio, currency="USD", amount=D("10000"), date=TODAY - datetime.timedelta(days=10))
    paper_account(portfolio)
    return portfolio


@pytest.fixture
def jobs(django_capture_on_commit_callbacks: Any) -> Callable[[Callable[[], Any]], Any]:
    """Runs a request as the server does: the jobs its writes enqueue run (in-process) once it commits."""

    def run(call: Callable[[], Any]) -> Any:
        with django_capture_on_commit_callbacks(execute=True):
            return call()

    return run


def order_body(portfolio: Any, asset: Any, **extra: Any) -> dict[str, Any]:
    return {"portfolio": portfolio.pk, "asset": asset.pk, "side": "buy", "quantity": "10", **extra}


def ids(response: Any) -> set[int]:
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


# --- Creating, submitting, cancelling ---------------------------------------------------------------------


def test_an_advisor_creates_a_draft_and_reads_it_back_with_its_audit_trail(advisor, portfolio, asset, api) -> None:
    body = order_body(portfolio, asset, order_type="limit", limit_price="95.5", time_in_force="gtc", notes="Rebalance")

    created = api(advisor).post("/api/v1/orders/", body, format="json")

    assert created.status_code == 201, created.content
    order = created.json()
    assert (order["status"], order["side"], order["order_type"], order["time_in_force"]) == (
        "draft",
        "buy",
        "limit",
        "gtc",
    )
    assert (order["quantity"], order["limit_price"]) == ("10.0000000000", "95.5000000000")
    assert (order["filled_quantity"], order["remaining_quantity"]) == ("0.0000000000", "10.0000000000")
    assert (order["client"], order["portfolio"], order["asset"]) == (portfolio.client_id, portfolio.pk, asset.pk)
    assert (order["broker"], order["account_id"]) == ("Paper broker", f"PAPER-{portfolio.pk}")
    assert order["client_order_id"].startswith("pb-")
    assert (order["broker_order_id"], order["hold_price"], order["submitted_at"]) == (None, None, None)
    assert order["placed_by"] == advisor.pk
    assert [(e["from_status"], e["to_status"]) for e in order["events"]] == [("", "draft")]
    assert order["events"][0]["actor"] == advisor.pk
    assert order["fills"] == []
    assert api(advisor).get(f"/api/v1/orders/{order['id']}/").json() == order


def test_creating_with_submit_holds_the_cash_and_answers_pending(advisor, portfolio, asset, api) -> None:
    created = api(advisor).post("/api/v1/orders/", order_body(portfolio, asset, submit=True), format="json")

    assert created.status_code == 201, created.content
    order = created.json()
    assert order["status"] == "pending"
    # A market buy holds at the latest price plus the 5% buffer: 10 x 105 + fees 1.05.
    assert order["hold_price"] == "105.0000000000"
    assert order["submitted_at"] is not None
    assert order["expires_at"] is not None
    assert [(e["from_status"], e["to_status"]) for e in order["events"]] == [("", "draft"), ("draft", "pending")]
    hold = cash_hold_amount(reference=Order.objects.get().hold_reference)
    assert hold == D("1051.0500")


def test_an_order_the_cash_cannot_cover_is_refused_with_409_naming_what_is_missing_and_nothing_is_kept(
    advisor, portfolio, asset, api
) -> None:
    too_big = order_body(portfolio, asset, quantity="1000", submit=True)

    refused = api(advisor).post("/api/v1/orders/", too_big, format="json")

    assert refused.status_code == 409, refused.content
    assert refused.json()["detail"].endswith("USD is missing.")
    assert not Order.objects.exists()


def test_submitting_a_draft_holds_its_cash_and_a_second_submit_is_409(advisor, portfolio, asset, api) -> None:
    order = services.order_create(actor=advisor, portfolio=portfolio, asset=asset, side="buy", quantity=D("10"))

    submitted = api(advisor).post(f"/api/v1/orders/{order.pk}/submit/")

    assert submitted.status_code == 200, submitted.content
    assert submitted.json()["status"] == "pending"
    again = api(advisor).post(f"/api/v1/orders/{order.pk}/submit/")
    assert again.status_code == 409
    assert "draft" in again.json()["detail"]


def test_submitting_a_sell_of_units_not_held_is_409_naming_the_units(advisor, portfolio, asset, api) -> None:
    order = services.order_create(actor=advisor, portfolio=portfolio, asset=asset, side="sell", quantity=D("5"))

    refused = api(advisor).post(f"/api/v1/orders/{order.pk}/submit/")

    assert refused.status_code == 409
    assert "ACME" in refused.json()["detail"]
    order.refresh_from_db()
    assert order.status == Status.DRAFT


def test_cancelling_a_draft_ends_it_and_cancelling_it_again_is_409(advisor, portfolio, asset, api) -> None:
    order = services.order_create(actor=advisor, portfolio=portfolio, asset=asset, side="buy", quantity=D("10"))

    cancelled = api(advisor).post(f"/api/v1/orders/{order.pk}/cancel/")

    assert cancelled.status_code == 200, cancelled.content
    assert cancelled.json()["status"] == "cancelled"
    assert cancelled.json()["closed_at"] is not None
    assert cancelled.json()["events"][-1]["to_status"] == "cancelled"
    assert api(advisor).post(f"/api/v1/orders/{order.pk}/cancel/").status_code == 409


def test_cancelling_an_order_open_at_the_broker_releases_its_hold(advisor, portfolio, asset, api, jobs) -> None:
    # A limit far below the price: accepted by the broker, never filled.
    body = order_body(portfolio, asset, order_type="limit", limit_price="50", submit=True)
    order_id = jobs(lambda: api(advisor).post("/api/v1/orders/", body, format="json")).json()["id"]
    assert Order.objects.get(pk=order_id).status == Status.SUBMITTED

    cancelled = api(advisor).post(f"/api/v1/orders/{order_id}/cancel/")

    assert cancelled.status_code == 200, cancelled.content
    assert cancelled.json()["status"] == "cancelled"
    assert cash_hold_amount(reference=Order.objects.get(pk=order_id).hold_reference) == 0


def test_a_broker_that_cannot_be_reached_on_cancel_answers_503_and_the_order_stays_open(
    advisor, portfolio, asset, api, jobs, settings
) -> None:
    body = order_body(portfolio, asset, order_type="limit", limit_price="50", submit=True)
    order_id = jobs(lambda: api(advisor).post("/api/v1/orders/", body, format="json")).json()["id"]
    broker_offline(settings)

    refused = api(advisor).post(f"/api/v1/orders/{order_id}/cancel/")

    assert refused.status_code == 503
    assert "broker" in refused.json()["detail"]
    assert refused["Retry-After"] == "30"
    assert Order.objects.get(pk=order_id).status == Status.SUBMITTED


def test_a_market_buy_placed_through_the_api_fills_and_its_fill_is_listed(advisor, portfolio, asset, api, jobs) -> None:
    created = jobs(
        lambda: api(advisor).post("/api/v1/orders/", order_body(portfolio, asset, submit=True), format="json")
    )
    order_id = created.json()["id"]

    order = api(advisor).get(f"/api/v1/orders/{order_id}/").json()

    assert order["status"] == "filled"
    assert order["filled_quantity"] == "10.0000000000"
    assert [e["to_status"] for e in order["events"]] == ["draft", "pending", "submitted", "filled"]
    assert order["events"][-1]["actor"] is None  # the broker's report, applied by a job
    [fill] = order["fills"]
    assert (fill["quantity"], fill["price"], fill["fees"]) == ("10.0000000000", "100.0000000000", "1.0000")
    assert (fill["portfolio"], fill["asset"], fill["exceeded_hold"], fill["shortfall"]) == (
        portfolio.pk,
        asset.pk,
        False,
        "",
    )
    assert fill["allocation"] == Fill.objects.get().allocation_id
    listed = api(advisor).get(f"/api/v1/fills/?order={order_id}").json()["results"]
    assert listed == [fill]


def test_orders_are_never_edited_or_deleted_through_the_api(advisor, portfolio, asset, api) -> None:
    order = OrderFactory(portfolio=portfolio, asset=asset)
    url = f"/api/v1/orders/{order.pk}/"
    assert api(advisor).put(url, order_body(portfolio, asset), format="json").status_code == 405
    assert api(advisor).patch(url, {"notes": "x"}, format="json").status_code == 405
    assert api(advisor).delete(url).status_code == 405


def test_fills_are_read_only_through_the_api(advisor, api) -> None:
    fill = FillFactory(order__client=ClientFactory(advisor=advisor))
    assert api(advisor).post("/api/v1/fills/", {}, format="json").status_code == 405
    assert api(advisor).delete(f"/api/v1/fills/{fill.pk}/").status_code == 405


# --- Validation ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "extra"),
    [
        pytest.param("limit_price", {"limit_price": "90"}, id="limit-price-on-a-market-order"),
        pytest.param("limit_price", {"order_type": "limit"}, id="limit-order-without-limit"),
        pytest.param("limit_price", {"order_type": "limit", "limit_price": "0"}, id="limit-of-zero"),
        pytest.param("quantity", {"quantity": "0"}, id="quantity-zero"),
        pytest.param("quantity", {"quantity": "-3"}, id="quantity-negative"),
        pytest.param("quantity", {"quantity": "1e3"}, id="quantity-in-exponent-form"),
        pytest.param("side", {"side": "short"}, id="unknown-side"),
        pytest.param("order_type", {"order_type": "stop"}, id="unknown-type"),
        pytest.param("time_in_force", {"time_in_force": "ioc"}, id="unknown-time-in-force"),
        pytest.param("connection", {"connection": 999999}, id="unknown-connection"),
        pytest.param("asset", {"asset": 987654321}, id="unknown-asset"),
        pytest.param("portfolio", {"portfolio": 987654321}, id="unknown-portfolio"),
    ],
)
def test_invalid_order_fields_get_a_400_naming_the_field(field, extra, advisor, portfolio, asset, api) -> None:
    refused = api(advisor).post("/api/v1/orders/", {**order_body(portfolio, asset), **extra}, format="json")

    assert refused.status_code == 400, refused.content
    assert field in refused.json()
    assert not Order.objects.exists()


def test_another_advisors_portfolio_is_refused_like_an_unknown_one(advisor, other_advisor, asset, api) -> None:
    theirs = main_portfolio(ClientFactory(advisor=other_advisor))
    refused = api(advisor).post("/api/v1/orders/", order_body(theirs, asset), format="json")
    unknown = api(advisor).post("/api/v1/orders/", {**order_body(theirs, asset), "portfolio": 987654321}, format="json")

    assert refused.status_code == unknown.status_code == 400
    assert set(refused.json()) == set(unknown.json()) == {"portfolio"}
    assert not Order.objects.exists()


def test_an_order_in_a_closed_portfolio_is_refused(advisor, portfolio, asset, api) -> None:
    portfolio.closed_on = TODAY
    portfolio.save(update_fields=["closed_on"])

    refused = api(advisor).post("/api/v1/orders/", order_body(portfolio, asset), format="json")

    assert refused.status_code in (400, 409)
    assert not Order.objects.exists()


# --- Roles and scope --------------------------------------------------------------------------------------------


def test_an_auditor_reads_orders_and_fills_but_cannot_create_submit_or_cancel(auditor, portfolio, asset, api) -> None:
    order = OrderFactory(portfolio=portfolio, asset=asset)
    fill = FillFactory(order__portfolio=portfolio)
    as_auditor = api(auditor)

    assert order.pk in ids(as_auditor.get("/api/v1/orders/"))
    assert as_auditor.get(f"/api/v1/orders/{order.pk}/").status_code == 200
    assert fill.pk in ids(as_auditor.get("/api/v1/fills/"))
    assert as_auditor.post("/api/v1/orders/", order_body(portfolio, asset), format="json").status_code == 403
    assert as_auditor.post(f"/api/v1/orders/{order.pk}/submit/").status_code == 403
    assert as_auditor.post(f"/api/v1/orders/{order.pk}/cancel/").status_code == 403
    order.refresh_from_db()
    assert order.status == Status.DRAFT


def test_operations_cancel_any_order_but_cannot_create_or_submit_one(operations, portfolio, asset, api) -> None:
    order = OrderFactory(portfolio=portfolio, asset=asset)
    as_operations = api(operations)

    assert as_operations.post("/api/v1/orders/", order_body(portfolio, asset), format="json").status_code == 403
    assert as_operations.post(f"/api/v1/orders/{order.pk}/submit/").status_code == 403
    cancelled = as_operations.post(f"/api/v1/orders/{order.pk}/cancel/")
    assert cancelled.status_code == 200, cancelled.content
    assert cancelled.json()["events"][-1]["actor"] == operations.pk


def test_creating_with_submit_needs_the_permission_to_submit_as_well(portfolio, asset, api) -> None:
    # Operations see every client; given the permission to add orders, and not the one to submit them.
    creator = OperationsFactory()
    creator.user_permissions.add(Permission.objects.get(content_type__app_label="trading", codename="add_order"))
    assert api(creator).post("/api/v1/orders/", order_body(portfolio, asset), format="json").status_code == 201

    refused = api(creator).post("/api/v1/orders/", order_body(portfolio, asset, submit=True), format="json")

    assert refused.status_code == 403
    assert Order.objects.get().status == Status.DRAFT  # the first one; the refused one was not created


def test_staff_in_no_group_see_no_orders_or_fills(nobody, api) -> None:
    OrderFactory()
    assert api(nobody).get("/api/v1/orders/").status_code == 403
    assert api(nobody).get("/api/v1/fills/").status_code == 403


def test_an_advisor_never_sees_or_moves_another_advisors_orders(advisor, other_advisor, asset, api) -> None:
    mine = OrderFactory(client=ClientFactory(advisor=advisor), asset=asset)
    theirs = OrderFactory(client=ClientFactory(advisor=other_advisor), asset=asset)
    as_advisor = api(advisor)

    assert ids(as_advisor.get("/api/v1/orders/")) == {mine.pk}
    assert as_advisor.get(f"/api/v1/orders/{theirs.pk}/").status_code == 404
    by_their_portfolio = as_advisor.get(f"/api/v1/orders/?portfolio={theirs.portfolio_id}")
    assert by_their_portfolio.status_code == 400
    assert set(by_their_portfolio.json()) == {"portfolio"}
    assert as_advisor.get(f"/api/v1/orders/?client={theirs.client_id}").status_code == 400
    assert as_advisor.get(f"/api/v1/orders/?search={theirs.client_order_id}").json()["count"] == 0
    assert as_advisor.post(f"/api/v1/orders/{theirs.pk}/submit/").status_code == 404
    assert as_advisor.post(f"/api/v1/orders/{theirs.pk}/cancel/").status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == Status.DRAFT


def test_an_advisor_never_sees_another_advisors_fills(advisor, other_advisor, api) -> None:
    mine = FillFactory(order__client=ClientFactory(advisor=advisor))
    theirs = FillFactory(order__client=ClientFactory(advisor=other_advisor))
    as_advisor = api(advisor)

    assert ids(as_advisor.get("/api/v1/fills/")) == {mine.pk}
    assert as_advisor.get(f"/api/v1/fills/{theirs.pk}/").status_code == 404
    assert as_advisor.get(f"/api/v1/fills/?portfolio={theirs.order.portfolio_id}").status_code == 400
    assert as_advisor.get(f"/api/v1/fills/?order={theirs.order_id}").status_code == 400
    assert as_advisor.get(f"/api/v1/fills/?search={theirs.broker_fill_id}").json()["count"] == 0


# --- Filters ------------------------------------------------------------------------------------------------------


def test_orders_filter_by_portfolio(operations, api) -> None:
    client = ClientFactory()
    pension = PortfolioFactory(client=client)
    in_pension = OrderFactory(portfolio=pension)
    OrderFactory(client=client)
    assert ids(api(operations).get(f"/api/v1/orders/?portfolio={pension.pk}")) == {in_pension.pk}


def test_orders_filter_by_client(operations, api) -> None:
    wanted = OrderFactory()
    OrderFactory()
    assert ids(api(operations).get(f"/api/v1/orders/?client={wanted.client_id}")) == {wanted.pk}


def test_orders_filter_by_asset(operations, api) -> None:
    wanted = OrderFactory()
    OrderFactory()
    assert ids(api(operations).get(f"/api/v1/orders/?asset={wanted.asset_id}")) == {wanted.pk}


def test_orders_filter_by_several_statuses(operations, api) -> None:
    submitted = OrderFactory(status=Status.SUBMITTED, broker_order_id="b-1")
    partial = OrderFactory(status=Status.PARTIALLY_FILLED, broker_order_id="b-2", filled_quantity=D("1"))
    OrderFactory()
    url = "/api/v1/orders/?status=submitted&status=partially_filled"
    assert ids(api(operations).get(url)) == {submitted.pk, partial.pk}
    assert "status" in api(operations).get("/api/v1/orders/?status=lost").json()


def test_orders_filter_by_side(operations, api) -> None:
    sell = OrderFactory(side=Order.Side.SELL)
    OrderFactory()
    assert ids(api(operations).get("/api/v1/orders/?side=sell")) == {sell.pk}


def test_orders_filter_by_order_type(operations, api) -> None:
    limit = OrderFactory(order_type=Order.Type.LIMIT, limit_price=D("10"))
    OrderFactory()
    assert ids(api(operations).get("/api/v1/orders/?order_type=limit")) == {limit.pk}


def test_orders_filter_by_connection(operations, api) -> None:
    other = BrokerConnectionFactory(name="Other paper broker")
    elsewhere = OrderFactory(connection=other)
    OrderFactory()
    assert ids(api(operations).get(f"/api/v1/orders/?connection={other.pk}")) == {elsewhere.pk}


def test_orders_filter_by_created_range(operations, api) -> None:
    old, new = OrderFactory(), OrderFactory()
    Order.objects.filter(pk=old.pk).update(created_at=timezone.now() - datetime.timedelta(days=40))
    since = (TODAY - datetime.timedelta(days=2)).isoformat()
    until = (TODAY - datetime.timedelta(days=30)).isoformat()
    assert ids(api(operations).get(f"/api/v1/orders/?created_after={since}")) == {new.pk}
    assert ids(api(operations).get(f"/api/v1/orders/?created_before={until}")) == {old.pk}


def test_orders_search_finds_an_order_by_its_exact_client_or_broker_order_id(operations, api) -> None:
    wanted = OrderFactory(status=Status.SUBMITTED, broker_order_id="paper-abc")
    OrderFactory()
    c = api(operations)
    assert ids(c.get(f"/api/v1/orders/?search={wanted.client_order_id}")) == {wanted.pk}
    assert ids(c.get("/api/v1/orders/?search=paper-abc")) == {wanted.pk}
    assert ids(c.get("/api/v1/orders/?search=paper-ab")) == set()


def test_orders_are_ordered_by_a_named_field(operations, api) -> None:
    small, large = OrderFactory(quantity=D("1")), OrderFactory(quantity=D("50"))
    listed = api(operations).get("/api/v1/orders/?ordering=-quantity").json()["results"]
    assert [row["id"] for row in listed] == [large.pk, small.pk]


def test_fills_filter_by_order(operations, api) -> None:
    wanted = FillFactory()
    FillFactory()
    assert ids(api(operations).get(f"/api/v1/fills/?order={wanted.order_id}")) == {wanted.pk}


def test_fills_filter_by_portfolio(operations, api) -> None:
    wanted = FillFactory()
    FillFactory()
    assert ids(api(operations).get(f"/api/v1/fills/?portfolio={wanted.order.portfolio_id}")) == {wanted.pk}


def test_fills_filter_by_asset(operations, api) -> None:
    wanted = FillFactory()
    FillFactory()
    assert ids(api(operations).get(f"/api/v1/fills/?asset={wanted.order.asset_id}")) == {wanted.pk}


def test_fills_filter_by_exceeded_hold(operations, api) -> None:
    flagged = FillFactory(exceeded_hold=True, shortfall="Cash of Main would fall 10.00 USD short.")
    FillFactory()
    listed = api(operations).get("/api/v1/fills/?exceeded_hold=true")
    assert ids(listed) == {flagged.pk}
    assert listed.json()["results"][0]["shortfall"] == "Cash of Main would fall 10.00 USD short."


def test_fills_filter_by_executed_range(operations, api) -> None:
    old = FillFactory(executed_at=timezone.now() - datetime.timedelta(days=40))
    new = FillFactory()
    since = (TODAY - datetime.timedelta(days=2)).isoformat()
    until = (TODAY - datetime.timedelta(days=30)).isoformat()
    assert ids(api(operations).get(f"/api/v1/fills/?executed_after={since}")) == {new.pk}
    assert ids(api(operations).get(f"/api/v1/fills/?executed_before={until}")) == {old.pk}


def test_fills_search_finds_a_fill_by_its_exact_broker_fill_id_or_its_orders_id(operations, api) -> None:
    wanted = FillFactory(broker_fill_id="paper-fill-7")
    FillFactory()
    c = api(operations)
    assert ids(c.get("/api/v1/fills/?search=paper-fill-7")) == {wanted.pk}
    assert ids(c.get(f"/api/v1/fills/?search={wanted.order.client_order_id}")) == {wanted.pk}


# --- Query counts -------------------------------------------------------------------------------------------------


def test_orders_list_query_count_does_not_grow_with_rows(advisor, api, assert_list_queries_constant) -> None:
    client = ClientFactory(advisor=advisor)
    assert_list_queries_constant(
        api(advisor), "/api/v1/orders/", lambda n: OrderFactory.create_batch(n, client=client, placed_by=advisor)
    )


def test_fills_list_query_count_does_not_grow_with_rows(advisor, api, assert_list_queries_constant) -> None:
    client = ClientFactory(advisor=advisor)
    assert_list_queries_constant(
        api(advisor), "/api/v1/fills/", lambda n: FillFactory.create_batch(n, order__client=client)
    )


def test_an_orders_page_costs_the_same_however_many_events_and_fills_it_has(advisor, api, count_queries) -> None:
    order = OrderFactory(client=ClientFactory(advisor=advisor), status=Status.SUBMITTED, placed_by=advisor)
    url = f"/api/v1/orders/{order.pk}/"

    def measure() -> int:
        # A fresh user object, as each real request has: role and permission look-ups are counted alike.
        fresh = type(advisor).objects.get(pk=advisor.pk)
        cache.clear()
        return count_queries(lambda: api(fresh).get(url))

    OrderEventFactory(order=order, actor=advisor)
    FillFactory(order=order, quantity=D("1"))
    few = measure()
    OrderEventFactory.create_batch(10, order=order, actor=UserFactory())
    FillFactory.create_batch(5, order=order, quantity=D("1"))
    assert measure() == few


# --- The schema tells the truth ---------------------------------------------------------------------------------


def test_order_and_fill_endpoints_match_the_schema(as_user, settings, jobs) -> None:  # noqa: F811
    asset = AssetFactory(ticker="ACME", currency="USD")
    PriceFactory(asset=asset, date=TODAY - datetime.timedelta(days=1), close=D("100"))
    client = ClientFactory(base_currency="USD")
    portfolio = main_portfolio(client)
    TransactionFactory(portfolio=portfolio, currency="USD", amount=D("10000"))
    paper_account(portfolio)
    api = as_user(client.advisor)

    draft = api.post("/api/v1/orders/", order_body(portfolio, asset), expect=201)
    api.get(f"/api/v1/orders/{draft['id']}/", expect=200)
    assert api.get(f"/api/v1/orders/?portfolio={portfolio.pk}&status=draft", expect=200)["count"] == 1
    assert "limit_price" in api.post("/api/v1/orders/", order_body(portfolio, asset, order_type="limit"), expect=400)
    too_big = order_body(portfolio, asset, quantity="1000", submit=True)
    assert "detail" in api.post("/api/v1/orders/", too_big, expect=409)
    api.post(f"/api/v1/orders/{draft['id']}/submit/", None, expect=200, check_request=False)
    assert "detail" in api.post(f"/api/v1/orders/{draft['id']}/submit/", None, expect=409, check_request=False)
    resting = order_body(portfolio, asset, order_type="limit", limit_price="50", submit=True)
    open_order = jobs(lambda: api.post("/api/v1/orders/", resting, expect=201))
    broker_offline(settings)
    unreachable = api.post(f"/api/v1/orders/{open_order['id']}/cancel/", None, expect=503, check_request=False)
    assert "detail" in unreachable
    assert "detail" in api.get("/api/v1/orders/999999/", expect=404)

    fill = FillFactory(order__portfolio=portfolio, exceeded_hold=True, shortfall="Short of 1.00 USD.")
    assert api.get("/api/v1/fills/?exceeded_hold=true", expect=200)["count"] == 1
    assert api.get(f"/api/v1/fills/{fill.pk}/", expect=200)["shortfall"] == "Short of 1.00 USD."


# --- Idempotency-Key ----------------------------------------------------------------------------------------------


def post_with_key(api_client: Any, body: dict[str, Any], key: str = "order-key-1") -> Any:
    return api_client.post("/api/v1/orders/", body, format="json", headers={"Idempotency-Key": key})


def test_the_same_idempotency_key_and_body_create_one_order_and_replay_the_first_answer(
    advisor, portfolio, asset, api
) -> None:
    body = order_body(portfolio, asset, submit=True)

    first = post_with_key(api(advisor), body)
    again = post_with_key(api(advisor), body)

    assert first.status_code == again.status_code == 201, first.content
    assert again.json() == first.json()
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert Order.objects.count() == 1


def test_the_same_idempotency_key_with_another_body_is_refused_with_422(advisor, portfolio, asset, api) -> None:
    post_with_key(api(advisor), order_body(portfolio, asset))

    other = post_with_key(api(advisor), order_body(portfolio, asset, quantity="11"))

    assert other.status_code == 422
    assert Order.objects.count() == 1


def test_a_refused_order_with_an_idempotency_key_is_replayed_as_409_and_creates_nothing(
    advisor, portfolio, asset, api
) -> None:
    too_big = order_body(portfolio, asset, quantity="1000", submit=True)

    first = post_with_key(api(advisor), too_big)
    again = post_with_key(api(advisor), too_big)

    assert first.status_code == again.status_code == 409
    assert again.json() == first.json()
    assert not Order.objects.exists()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_order_posts_with_one_key_create_one_order_and_answer_alike(
    writer: Any, writers_client: Any
) -> None:
    asset = AssetFactory(currency="EUR")
    portfolio = main_portfolio(writers_client)
    paper_account(portfolio)
    body = order_body(portfolio, asset, order_type="limit", limit_price="10")
    answers: list[tuple[int, Any, bool]] = []

    def send(_: int) -> None:
        api_client = APIClient()
        api_client.force_authenticate(User.objects.get(pk=writer.pk))
        response = post_with_key(api_client, body, key="one-order-key-for-all")
        answers.append((response.status_code, response.json(), response.headers.get("Idempotent-Replayed") == "true"))

    run_at_once(send, 20)

    assert len(answers) == 20
    assert {status for status, _, _ in answers} == {201}
    assert all(payload == answers[0][1] for _, payload, _ in answers)
    assert sorted(was_replayed for _, _, was_replayed in answers) == [False] + [True] * 19
    assert Order.objects.filter(client=writers_client).count() == 1
