"""Orders and fills in the admin: scoped lists whose cost does not grow with rows, a draft added through the service,
the submit and cancel actions through the services (reporting refusals), and pages that never edit or delete."""

import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.urls import reverse
from django.utils import timezone

from clients.tests.factories import ClientFactory, main_portfolio
from holdings.tests.factories import AssetFactory, PriceFactory
from ledger.selectors import cash_hold_amount
from ledger.tests.factories import TransactionFactory
from portfolio_site.testing import admin_messages, changelist_ids, page_queries
from trading import services
from trading.models import Order, OrderEvent
from trading.tests.factories import FillFactory, OrderEventFactory, OrderFactory, paper_account

pytestmark = pytest.mark.django_db

D = Decimal
Status = Order.Status
TODAY = timezone.localdate()
ORDERS = "admin:trading_order_changelist"
FILLS = "admin:trading_fill_changelist"


@pytest.fixture(autouse=True)
def _paper_broker(settings: Any) -> Any:
    settings.TRADING_BROKER_KINDS = {
        "paper": {"BACKEND": "trading.brokers.paper.PaperBroker", "OPTIONS": {"fee_rate": "0.001", "minimum_fee": "1"}}
    }
    settings.TRADING_MARKET_ORDER_BUFFER = "0.05"
    return settings


@pytest.fixture
def asset(db: None) -> Any:
    asset = AssetFactory(ticker="ACME", currency="USD")
    PriceFactory(asset=asset, date=TODAY - datetime.timedelta(days=1), close=D("100"))
    return asset


@pytest.fixture
def portfolio(advisor: Any) -> Any:
    portfolio = main_portfolio(ClientFactory(advisor=advisor))
    TransactionFactory(portfolio=portfolio, currency="USD", amount=D("10000"), date=TODAY - datetime.timedelta(days=10))
    paper_account(portfolio)
    return portfolio


def draft(advisor: Any, portfolio: Any, asset: Any, quantity: str = "10") -> Order:
    return services.order_create(actor=advisor, portfolio=portfolio, asset=asset, side="buy", quantity=D(quantity))


def run_action(client: Any, action: str, *orders: Order) -> Any:
    return client.post(reverse(ORDERS), {"action": action, ACTION_CHECKBOX_NAME: [order.pk for order in orders]})


# --- Lists ----------------------------------------------------------------------------------------------------


def test_order_changelist_loads_with_the_same_query_count_for_5_and_50_rows(client, superuser, count_queries):
    client.force_login(superuser)
    url = reverse(ORDERS)
    OrderFactory.create_batch(5, placed_by=superuser)
    page_queries(client, count_queries, url)  # warm up per-process caches (content types, ...)
    few = page_queries(client, count_queries, url)

    OrderFactory.create_batch(45, placed_by=superuser)
    many = page_queries(client, count_queries, url)

    assert client.get(url).context["cl"].result_count == 50
    assert few == many


def test_fill_changelist_loads_with_the_same_query_count_for_5_and_50_rows(client, superuser, count_queries):
    client.force_login(superuser)
    url = reverse(FILLS)
    FillFactory.create_batch(5)
    page_queries(client, count_queries, url)
    few = page_queries(client, count_queries, url)

    FillFactory.create_batch(45)
    many = page_queries(client, count_queries, url)

    assert client.get(url).context["cl"].result_count == 50
    assert few == many


def test_an_order_page_costs_the_same_however_many_fills_and_events_it_has(client, superuser, count_queries):
    client.force_login(superuser)
    order = OrderFactory(status=Status.SUBMITTED, broker_order_id="b-1")
    url = reverse("admin:trading_order_change", args=[order.pk])
    FillFactory(order=order, quantity=D("1"))
    OrderEventFactory(order=order, actor=superuser)
    page_queries(client, count_queries, url)
    few = page_queries(client, count_queries, url)

    FillFactory.create_batch(5, order=order, quantity=D("1"))
    OrderEventFactory.create_batch(10, order=order, actor=superuser)
    many = page_queries(client, count_queries, url)

    assert few == many


def test_order_and_fill_changelists_show_an_advisor_only_their_own_clients_rows(client, advisor, other_advisor):
    own_order = OrderFactory(client=ClientFactory(advisor=advisor))
    their_order = OrderFactory(client=ClientFactory(advisor=other_advisor))
    own_fill = FillFactory(order__client=ClientFactory(advisor=advisor))
    their_fill = FillFactory(order__client=ClientFactory(advisor=other_advisor))
    client.force_login(advisor)

    assert changelist_ids(client.get(reverse(ORDERS))) == {own_order.pk, own_fill.order_id}
    assert changelist_ids(client.get(reverse(FILLS))) == {own_fill.pk}
    hidden = client.get(reverse("admin:trading_order_change", args=[their_order.pk]))
    assert hidden.status_code == 302
    assert client.get(reverse("admin:trading_fill_change", args=[their_fill.pk])).status_code == 302


def test_operations_and_auditors_see_every_order_and_staff_in_no_group_none(client, operations, auditor, nobody):
    order = OrderFactory()
    for user in (operations, auditor):
        client.force_login(user)
        assert changelist_ids(client.get(reverse(ORDERS))) == {order.pk}
    client.force_login(nobody)
    assert client.get(reverse(ORDERS)).status_code == 403


def test_order_changelist_filters_by_status_and_searches_an_exact_order_id(client, operations):
    submitted = OrderFactory(status=Status.SUBMITTED, broker_order_id="paper-xyz")
    draft_order = OrderFactory()
    client.force_login(operations)

    assert changelist_ids(client.get(reverse(ORDERS), {"status__exact": "draft"})) == {draft_order.pk}
    assert changelist_ids(client.get(reverse(ORDERS), {"q": "paper-xyz"})) == {submitted.pk}
    assert changelist_ids(client.get(reverse(ORDERS), {"q": submitted.client_order_id})) == {submitted.pk}
    assert changelist_ids(client.get(reverse(ORDERS), {"q": "paper-xy"})) == set()


def test_fill_changelist_finds_the_fills_that_need_attention_with_their_shortfall(client, operations):
    flagged = FillFactory(exceeded_hold=True, shortfall="Cash would fall 12.00 USD short.")
    FillFactory()
    client.force_login(operations)

    response = client.get(reverse(FILLS), {"exceeded_hold": "1"})

    assert changelist_ids(response) == {flagged.pk}
    assert "Cash would fall 12.00 USD short." in response.content.decode()
    assert "needs attention" in client.get(reverse(FILLS)).content.decode()
    assert changelist_ids(client.get(reverse(FILLS), {"q": flagged.broker_fill_id})) == {flagged.pk}


# --- Adding a draft --------------------------------------------------------------------------------------------


def test_the_add_form_creates_a_draft_through_the_service(client, advisor, portfolio, asset):
    client.force_login(advisor)
    form = {
        "portfolio": portfolio.pk,
        "asset": asset.pk,
        "side": "buy",
        "quantity": "5",
        "order_type": "limit",
        "limit_price": "90",
        "time_in_force": "gtc",
        "broker": "paper",
        "notes": "",
    }

    response = client.post(reverse("admin:trading_order_add"), form)

    assert response.status_code == 302, response.context["adminform"].form.errors if response.context else ""
    order = Order.objects.get()
    assert (order.status, order.client_id, order.placed_by, order.limit_price) == (
        Status.DRAFT,
        portfolio.client_id,
        advisor,
        D("90"),
    )
    assert list(OrderEvent.objects.filter(order=order).values_list("to_status", flat=True)) == [Status.DRAFT]


def test_the_add_form_refuses_a_limit_price_on_a_market_order(client, advisor, portfolio, asset):
    client.force_login(advisor)
    form = {"portfolio": portfolio.pk, "asset": asset.pk, "side": "buy", "quantity": "5", "order_type": "market"}
    form |= {"limit_price": "90", "time_in_force": "day", "broker": "paper"}

    response = client.post(reverse("admin:trading_order_add"), form)

    assert response.status_code == 200
    assert "limit_price" in response.context["adminform"].form.errors
    assert not Order.objects.exists()


def test_the_add_page_is_refused_to_operations_and_auditors(client, operations, auditor):
    for user in (operations, auditor):
        client.force_login(user)
        assert client.get(reverse("admin:trading_order_add")).status_code == 403


def test_an_order_page_is_read_only_and_shows_its_fills_and_audit_trail(client, advisor, portfolio, asset):
    order = draft(advisor, portfolio, asset)
    client.force_login(advisor)
    url = reverse("admin:trading_order_change", args=[order.pk])

    page = client.get(url)

    assert page.status_code == 200
    assert not page.context["has_change_permission"]
    assert not page.context["has_delete_permission"]
    inlines = {inline.formset.model.__name__: inline for inline in page.context["inline_admin_formsets"]}
    assert set(inlines) == {"Fill", "OrderEvent"}
    for inline in inlines.values():
        assert (inline.has_add_permission, inline.has_change_permission, inline.has_delete_permission) == (
            False,
            False,
            False,
        )
    assert "Created as a draft." in page.content.decode()
    assert client.post(url, {"notes": "changed"}).status_code == 403
    assert client.post(reverse("admin:trading_order_delete", args=[order.pk]), {"post": "yes"}).status_code == 403
    assert Order.objects.filter(pk=order.pk, notes="").exists()


# --- Actions -------------------------------------------------------------------------------------------------------


def test_submit_action_submits_the_drafts_and_reports_each_refusal(client, advisor, portfolio, asset):
    coverable = draft(advisor, portfolio, asset)
    too_big = draft(advisor, portfolio, asset, quantity="1000")
    client.force_login(advisor)

    response = run_action(client, "submit_selected", coverable, too_big)

    assert response.status_code == 302
    coverable.refresh_from_db()
    too_big.refresh_from_db()
    assert coverable.status == Status.PENDING
    assert cash_hold_amount(reference=coverable.hold_reference) > 0
    assert too_big.status == Status.DRAFT
    shown = admin_messages(response)
    assert "Submitted 1 order(s)." in shown
    assert any(message.startswith(f"Not submitted: {too_big}") and "USD" in message for message in shown)


def test_submit_action_refuses_an_order_that_is_not_a_draft(client, advisor, portfolio, asset):
    order = draft(advisor, portfolio, asset)
    services.order_submit(actor=advisor, order=order)
    client.force_login(advisor)

    response = run_action(client, "submit_selected", order)

    assert any("Only a draft is submitted" in message for message in admin_messages(response))


def test_cancel_action_cancels_and_releases_the_hold_and_refuses_an_ended_order(client, advisor, portfolio, asset):
    open_order = draft(advisor, portfolio, asset)
    services.order_submit(actor=advisor, order=open_order)
    ended = draft(advisor, portfolio, asset)
    services.order_cancel(actor=advisor, order=ended)
    client.force_login(advisor)

    response = run_action(client, "cancel_selected", open_order, ended)

    open_order.refresh_from_db()
    assert open_order.status == Status.CANCELLED
    assert cash_hold_amount(reference=open_order.hold_reference) == 0
    shown = admin_messages(response)
    assert "Cancelled 1 order(s)." in shown
    assert any(message.startswith(f"Not cancelled: {ended}") for message in shown)


def test_cancel_action_reports_a_broker_that_cannot_be_reached(client, advisor, portfolio, asset, settings):
    order = OrderFactory(portfolio=portfolio, asset=asset, status=Status.SUBMITTED, broker_order_id="paper-1")
    settings.TRADING_BROKER_KINDS["paper"]["OPTIONS"]["offline"] = True
    client.force_login(advisor)

    response = run_action(client, "cancel_selected", order)

    order.refresh_from_db()
    assert order.status == Status.SUBMITTED
    assert any("broker cannot be reached" in message for message in admin_messages(response))


def test_operations_cancel_but_are_not_offered_the_submit_action(client, operations):
    order = OrderFactory()
    client.force_login(operations)

    offered = {name for name, _ in client.get(reverse(ORDERS)).context["action_form"].fields["action"].choices}
    response = run_action(client, "cancel_selected", order)

    assert "submit_selected" not in offered
    order.refresh_from_db()
    assert order.status == Status.CANCELLED
    assert "Cancelled 1 order(s)." in admin_messages(response)


def test_an_auditor_is_offered_no_action_and_a_posted_one_changes_nothing(client, auditor):
    order = OrderFactory()
    client.force_login(auditor)

    assert client.get(reverse(ORDERS)).context["action_form"] is None
    run_action(client, "cancel_selected", order)

    order.refresh_from_db()
    assert order.status == Status.DRAFT


def test_actions_cannot_reach_another_advisors_order(client, advisor, other_advisor):
    theirs = OrderFactory(client=ClientFactory(advisor=other_advisor))
    client.force_login(advisor)

    run_action(client, "cancel_selected", theirs)
    run_action(client, "submit_selected", theirs)

    theirs.refresh_from_db()
    assert theirs.status == Status.DRAFT
