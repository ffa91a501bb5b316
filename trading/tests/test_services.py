"""The order lifecycle through the services, with the paper broker: what staff and the broker's reports do to an
order, its hold, its fills and the portfolio's cash and units."""

import datetime
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import time_machine
from django.db import connection
from django.utils import timezone

from clients.services import portfolio_update
from clients.tests.factories import ClientFactory, main_portfolio
from holdings.models import Allocation, Asset
from holdings.selectors import position, unit_hold_quantity, units_free
from holdings.services import allocation_create, price_create, split_create
from holdings.tests.factories import AllocationFactory, AssetFactory, PriceFactory
from ledger.selectors import cash_available, cash_free, cash_hold_amount
from ledger.services import transaction_post
from ledger.tests.factories import TransactionFactory
from portfolio_site.errors import ConflictError
from trading import services, tasks
from trading.brokers import BrokerFill, BrokerOrder, BrokerState, BrokerUnavailable, OrderTicket
from trading.brokers.paper import PaperBroker
from trading.connections import broker_for
from trading.models import Fill, Order, OrderEvent, PaperOrder
from trading.tests.factories import BrokerConnectionFactory, OrderFactory, paper_account

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


def paper_options(settings: Any, **options: Any) -> None:
    settings.TRADING_BROKER_KINDS["paper"]["OPTIONS"].update(options)


@pytest.fixture
def asset(db: None) -> Asset:
    asset = AssetFactory(ticker="ACME", currency="USD")
    PriceFactory(asset=asset, date=TODAY - datetime.timedelta(days=1), close=D("100"))
    return asset


@pytest.fixture
def portfolio(advisor: Any) -> Any:
    portfolio = main_portfolio(ClientFactory(advisor=advisor))
    TransactionFactory(portfolio=portfolio, currency="USD", amount=D("10000"), date=TODAY - datetime.timedelta(days=10))
    paper_account(portfolio)
    return portfolio


@pytest.fixture
def run_jobs(django_capture_on_commit_callbacks: Any) -> Callable[..., Any]:
    """Runs a service as a request would: its jobs run (in-process) once its transaction commits."""

    def run(function: Callable[..., Any], /, **kwargs: Any) -> Any:
        with django_capture_on_commit_callbacks(execute=True):
            return function(**kwargs)

    return run


def submitted(run_jobs: Callable[..., Any], advisor: Any, **fields: Any) -> Order:
    order = services.order_create(actor=advisor, **fields)
    run_jobs(services.order_submit, actor=advisor, order=order)
    order.refresh_from_db()
    return order


def statuses(order: Order) -> list[tuple[str, str]]:
    return list(OrderEvent.objects.filter(order=order).values_list("from_status", "to_status"))


def test_a_market_buy_holds_its_cash_and_fills_at_the_latest_price(
    advisor: Any, portfolio: Any, asset: Asset, run_jobs: Callable[..., Any]
) -> None:
    order = services.order_create(actor=advisor, portfolio=portfolio, asset=asset, side="buy", quantity=D("10"))
    with_hold = services.order_submit  # the hold is checked before the job sends it
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(services, "_enqueue", lambda *args, **kwargs: None)
        with_hold(actor=advisor, order=order)
    # 10 units at 100 plus the 5% market buffer, plus the fee estimate (0.1% of 1,050.00 = 1.05).
    assert cash_hold_amount(reference=order.hold_reference) == D("1051.0500")
    assert cash_free(portfolio_id=portfolio.pk, currency="USD") == D("8948.9500")

    run_jobs(services.order_send, order_id=order.pk)

    order.refresh_from_db()
    assert order.status == Status.FILLED
    assert order.filled_quantity == D("10")
    fill = order.fills.get()
    assert (fill.quantity, fill.price, fill.fees, fill.exceeded_hold) == (D("10"), D("100"), D("1.0000"), False)
    assert fill.allocation.kind == Allocation.Kind.BUY
    assert fill.allocation.settlement.amount == D("1001.0000")
    assert cash_hold_amount(reference=order.hold_reference) == D("0")
    assert cash_available(portfolio_id=portfolio.pk, currency="USD") == D("8999.0000")
    assert position(portfolio_id=portfolio.pk, asset_id=asset.pk) == D("10")
    assert statuses(order) == [("", "draft"), ("draft", "pending"), ("pending", "submitted"), ("submitted", "filled")]
    assert order.closed_at is not None
    assert order.broker_order_id.startswith("paper-")


def test_a_limit_buy_waits_for_a_new_price_at_or_below_its_limit(
    advisor: Any, portfolio: Any, asset: Asset, run_jobs: Callable[..., Any]
) -> None:
    order = submitted(
        run_jobs,
        advisor,
        portfolio=portfolio,
        asset=asset,
        side="buy",
        quantity=D("10"),
        order_type="limit",
        limit_price=D("95"),
    )
    assert order.status == Status.SUBMITTED
    assert cash_hold_amount(reference=order.hold_reference) == D("951.0000")  # 950 + the 1.00 minimum fee

    price_create(asset=asset, date=TODAY, close=D("96"))
    assert services.order_sync(order_id=order.pk).status == Status.SUBMITTED  # above the limit: no fill
    price_create(asset=asset, date=TODAY + datetime.timedelta(days=1), close=D("94"))
    order = services.order_sync(order_id=order.pk)

    assert order.status == Status.FILLED
    assert order.fills.get().price == D("94")


def test_a_limit_sell_fills_at_or_above_its_limit(
    advisor: Any, portfolio: Any, asset: Asset, run_jobs: Callable[..., Any]
) -> None:
    AllocationFactory(portfolio=portfolio, asset=asset, quantity=D("10"), date=TODAY - datetime.timedelta(days=5))
    order = submitted(
        run_jobs,
        advisor,
        portfolio=portfolio,
        asset=asset,
        side="sell",
        quantity=D("10"),
        order_type="limit",
        limit_price=D("105"),
    )
    assert units_free(portfolio_id=portfolio.pk, asset_id=asset.pk) == D("0")

    price_create(asset=asset, date=TODAY, close=D("106"))
    order = services.order_sync(order_id=order.pk)

    assert order.status == Status.FILLED
    assert position(portfolio_id=portfolio.pk, asset_id=asset.pk) == D("0")
    # 1,060 less the 1.06 fee comes in.
    assert cash_available(portfolio_id=portfolio.pk, currency="USD") == D("11058.9400")


def test_partial_fills_shrink_the_hold_to_what_the_rest_needs(
    settings: Any, advisor: Any, portfolio: Any, asset: Asset, run_jobs: Callable[..., Any]
) -> None:
    paper_options(settings, fill_parts=2)
    order = submitted(
        run_jobs,
        advisor,
        portfolio=portfolio,
        asset=asset,
        side="buy",
        quantity=D("10"),
        order_type="limit",
        limit_price=D("100"),
    )
    price_create(asset=asset, date=TODAY, close=D("99"))

    order = services.order_sync(order_id=order.pk)
    assert (order.status, order.filled_quantity) == (Status.PARTIALLY_FILLED, D("5"))
    # The rest's cost at the limit, 5 x 100, plus a minimum fee for each of the two parts the broker fills in.
    assert cash_hold_amount(reference=order.hold_reference) == D("502.0000")

    order = services.order_sync(order_id=order.pk)
    assert (order.status, order.filled_quantity) == (Status.FILLED, D("10"))
    assert order.fills.count() == 2
    assert cash_hold_amount(reference=order.hold_reference) == D("0")


def test_cancelling_an_open_order_releases_its_hold_and_stops_it_at_the_broker(
    advisor: Any, portfolio: Any, asset: Asset, run_jobs: Callable[..., Any]
) -> None:
    order = submitted(
        run_jobs,
        advisor,
        portfolio=portfolio,
        asset=asset,
        side="buy",
        quantity=D("10"),
        order_type="limit",
        limit_price=D("90"),
    )

    order = services.order_cancel(actor=advisor, order=order)

    assert order.status == Status.CANCELLED
    assert cash_hold_amount(reference=order.hold_reference) == D("0")
    assert PaperOrder.objects.get(client_order_id=order.client_order_id).state == "cancelled"
    price_create(asset=asset, date=TODAY, close=D("80"))
    assert services.order_sync(order_id=order.pk).fills.count() == 0
    assert statuses(order)[-1] == ("submitted", "cancelled")


def test_a_draft_is_cancelled_without_the_broker(advisor: Any, portfolio: Any, asset: Asset) -> None:
    order = services.order_create(actor=advisor, portfolio=portfolio, asset=asset, side="buy", quantity=D("1"))

    assert services.order_cancel(actor=advisor, order=order).status == Status.CANCELLED
    assert not PaperOrder.objects.exists()


def test_a_filled_order_cannot_be_cancelled(
    advisor: Any, portfolio: Any, asset: Asset, run_jobs: Callable[..., Any]
) -> None:
    order = submitted(run_jobs, advisor, portfolio=portfolio, asset=asset, side="buy", quantity=D("1"))
    assert order.status == Status.FILLED

    with pytest.raises(ConflictError, match="filled: it cannot be cancelled"):
        services.order_cancel(actor=advisor, order=order)


def test_a_day_order_expires_at_the_end_of_its_day_and_releases_its_hold(
    advisor: Any, portfolio: Any, asset: Asset, run_jobs: Callable[..., Any]
) -> None:
    order = submitted(
        run_jobs,
        advisor,
        portfolio=portfolio,
        asset=asset,
        side="buy",
        quantity=D("10"),
        order_type="limit",
        limit_price=D("90"),
    )
    assert order.expires_at == services.day_end(order.submitted_at)
    assert services.order_expire(order_id=order.pk).status == Status.SUBMITTED  # not yet its end

    order = services.order_expire(order_id=order.pk, now=order.expires_at)

    assert order.status == Status.EXPIRED
    assert cash_hold_amount(reference=order.hold_reference) == D("0")
    assert PaperOrder.objects.get(client_order_id=order.client_order_id).state == "cancelled"


def test_the_periodic_job_expires_day_orders_and_leaves_good_till_cancelled_ones(
    advisor: Any, portfolio: Any, asset: Asset, run_jobs: Callable[..., Any]
) -> None:
    limit = {"portfolio": portfolio, "asset": asset, "side": "buy", "quantity": D("1"), "order_type": "limit"}
    day = submitted(run_jobs, advisor, limit_price=D("90"), **limit)
    gtc = submitted(run_jobs, advisor, limit_price=D("91"), time_in_force="gtc", **limit)
    Order.objects.filter(pk=day.pk).update(expires_at=timezone.now() - datetime.timedelta(seconds=1))

    assert tasks.orders_poll() == {"sent": 0, "polled": 1, "expired": 1, "unreachable": 0, "failed": 0}

    day.refresh_from_db()
    gtc.refresh_from_db()
    assert (day.status, gtc.status, gtc.expires_at) == (Status.EXPIRED, Status.SUBMITTED, None)


def test_day_end_is_midnight_where_the_firm_trades(settings: Any) -> None:
    settings.TRADING_TIMEZONE = "America/New_York"
    # 02:00 UTC on 1 December is still 30 November in New York (UTC-5): the order ends at 05:00 UTC on 1 December.
    placed = datetime.datetime(2026, 12, 1, 2, 0, tzinfo=datetime.UTC)

    assert services.day_end(placed) == datetime.datetime(2026, 12, 1, 5, 0, tzinfo=datetime.UTC)
    assert services.trading_day(placed) == datetime.date(2026, 11, 30)


def test_an_order_the_cash_cannot_cover_is_refused_naming_what_is_missing(
    advisor: Any, portfolio: Any, asset: Asset
) -> None:
    order = services.order_create(actor=advisor, portfolio=portfolio, asset=asset, side="buy", quantity=D("100"))

    with pytest.raises(ConflictError) as refused:
        services.order_submit(actor=advisor, order=order)

    # 100 x 105 + 10.50 fees = 10,510.50 against 10,000 available.
    assert refused.value.message == (
        f"Insufficient cash in {portfolio.name} for this order: it needs 10,510.50 USD (units at 105 plus estimated "
        "fees), 10,000.00 USD is available: 510.50 USD is missing."
    )
    order.refresh_from_db()
    assert order.status == Status.DRAFT
    assert cash_hold_amount(reference=order.hold_reference) == D("0")


def test_an_open_buy_holds_cash_that_a_withdrawal_cannot_take(
    advisor: Any, portfolio: Any, asset: Asset, run_jobs: Callable[..., Any]
) -> None:
    submitted(
        run_jobs,
        advisor,
        portfolio=portfolio,
        asset=asset,
        side="buy",
        quantity=D("90"),
        order_type="limit",
        limit_price=D("100"),
    )  # holds 9,009.00

    with pytest.raises(ConflictError):
        transaction_post(
            actor=advisor, portfolio_id=portfolio.pk, kind="withdrawal", amount=D("1000"), currency="USD", date=TODAY
        )
    transaction_post(
        actor=advisor, portfolio_id=portfolio.pk, kind="withdrawal", amount=D("991"), currency="USD", date=TODAY
    )


def test_an_open_sell_holds_units_another_sell_cannot_take(
    advisor: Any, portfolio: Any, asset: Asset, run_jobs: Callable[..., Any]
) -> None:
    AllocationFactory(portfolio=portfolio, asset=asset, quantity=D("10"), date=TODAY - datetime.timedelta(days=5))
    submitted(
        run_jobs,
        advisor,
        portfolio=portfolio,
        asset=asset,
        side="sell",
        quantity=D("8"),
        order_type="limit",
        limit_price=D("200"),
    )
    second = services.order_create(actor=advisor, portfolio=portfolio, asset=asset, side="sell", quantity=D("3"))

    with pytest.raises(ConflictError, match="it sells 3 units; 2 are available, 1 short"):
        services.order_submit(actor=advisor, order=second)
    with pytest.raises(ConflictError):
        allocation_create(
            actor=advisor, portfolio=portfolio, asset=asset, kind="sell", quantity=D("3"), price=D("100"), date=TODAY
        )


def test_a_split_between_order_and_fill_counts_in_the_unit_hold(
    advisor: Any, portfolio: Any, asset: Asset, run_jobs: Callable[..., Any]
) -> None:
    AllocationFactory(portfolio=portfolio, asset=asset, quantity=D("10"), date=TODAY - datetime.timedelta(days=5))
    with time_machine.travel(timezone.now() - datetime.timedelta(days=1)):  # placed yesterday, good till cancelled
        order = submitted(
            run_jobs,
            advisor,
            portfolio=portfolio,
            asset=asset,
            side="sell",
            quantity=D("10"),
            order_type="limit",
            limit_price=D("200"),
            time_in_force="gtc",
        )

    split_create(actor=advisor, asset=asset, date=TODAY, new_units=D("2"), old_units=D("1"))

    # Twenty units now, all of them still held for the order: none free for another sell.
    assert position(portfolio_id=portfolio.pk, asset_id=asset.pk) == D("20")
    assert units_free(portfolio_id=portfolio.pk, asset_id=asset.pk) == D("0")
    services.order_cancel(actor=advisor, order=order)
    assert units_free(portfolio_id=portfolio.pk, asset_id=asset.pk) == D("20")


def test_a_fill_reported_twice_is_recorded_once(
    advisor: Any, portfolio: Any, asset: Asset, run_jobs: Callable[..., Any]
) -> None:
    order = submitted(
        run_jobs,
        advisor,
        portfolio=portfolio,
        asset=asset,
        side="buy",
        quantity=D("10"),
        order_type="limit",
        limit_price=D("90"),
    )
    fill = BrokerFill(broker_fill_id="F-1", quantity=D("4"), price=D("89"), executed_at=timezone.now())

    first = services.fill_record(order_id=order.pk, fill=fill)
    again = services.fill_record(order_id=order.pk, fill=fill)

    assert first.pk == again.pk
    assert Fill.objects.filter(order=order).count() == 1
    assert Allocation.objects.filter(portfolio=portfolio, kind="buy").count() == 1
    order.refresh_from_db()
    assert (order.status, order.filled_quantity) == (Status.PARTIALLY_FILLED, D("4"))


def test_a_fill_costing_more_than_was_held_and_available_is_recorded_and_flagged(
    advisor: Any, portfolio: Any, asset: Asset, run_jobs: Callable[..., Any]
) -> None:
    order = submitted(
        run_jobs,
        advisor,
        portfolio=portfolio,
        asset=asset,
        side="buy",
        quantity=D("10"),
        order_type="limit",
        limit_price=D("90"),
    )
    # The broker filled far above the limit (a broker's error, or a gap): it happened, so it is recorded.
    fill = BrokerFill(broker_fill_id="F-1", quantity=D("10"), price=D("1200"), executed_at=timezone.now())

    recorded = services.fill_record(order_id=order.pk, fill=fill)

    assert recorded.exceeded_hold is True
    assert "Insufficient cash" in recorded.shortfall
    assert cash_available(portfolio_id=portfolio.pk, currency="USD") == D("-2000.0000")
    assert "Exceeded what was held" in OrderEvent.objects.filter(order=order).last().message


def test_a_fill_within_its_hold_is_not_flagged(
    advisor: Any, portfolio: Any, asset: Asset, run_jobs: Callable[..., Any]
) -> None:
    order = submitted(
        run_jobs,
        advisor,
        portfolio=portfolio,
        asset=asset,
        side="buy",
        quantity=D("10"),
        order_type="limit",
        limit_price=D("90"),
    )
    fill = BrokerFill(broker_fill_id="F-1", quantity=D("10"), price=D("90"), fees=D("1"), executed_at=timezone.now())

    assert services.fill_record(order_id=order.pk, fill=fill).exceeded_hold is False


def test_a_broker_outage_leaves_the_order_pending_and_it_is_sent_once_when_the_broker_returns(
    settings: Any, advisor: Any, portfolio: Any, asset: Asset, run_jobs: Callable[..., Any], jobs_as_on_a_worker: None
) -> None:
    paper_options(settings, offline=True)
    order = submitted(run_jobs, advisor, portfolio=portfolio, asset=asset, side="buy", quantity=D("1"))

    assert order.status == Status.PENDING
    assert order.send_attempts >= 1
    assert cash_hold_amount(reference=order.hold_reference) > 0

    paper_options(settings, offline=False)
    Order.objects.filter(pk=order.pk).update(submitted_at=timezone.now() - datetime.timedelta(minutes=5))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(services, "_enqueue", lambda *args, **kwargs: None)
        tasks.orders_poll()
        services.order_send(order_id=order.pk)  # a retry of the job arriving late: nothing sent again
    order.refresh_from_db()
    assert order.status == Status.SUBMITTED
    assert PaperOrder.objects.filter(client_order_id=order.client_order_id).count() == 1


def test_sending_again_names_the_same_order_at_the_broker(advisor: Any, portfolio: Any, asset: Asset) -> None:
    order = OrderFactory(portfolio=portfolio, asset=asset, quantity=D("1"))
    broker = broker_for(BrokerConnectionFactory())

    first = broker.submit(services.ticket(order))
    second = broker.submit(services.ticket(order))

    assert first.broker_order_id == second.broker_order_id
    assert PaperOrder.objects.count() == 1


def test_an_offline_broker_raises_unavailable(settings: Any, asset: Asset, portfolio: Any) -> None:
    paper_options(settings, offline=True)

    with pytest.raises(BrokerUnavailable):
        broker_for(BrokerConnectionFactory()).submit(services.ticket(OrderFactory(portfolio=portfolio, asset=asset)))


def test_a_market_order_for_an_asset_without_price_is_refused_before_any_hold(advisor: Any, portfolio: Any) -> None:
    order = services.order_create(
        actor=advisor, portfolio=portfolio, asset=AssetFactory(currency="USD"), side="buy", quantity=D("1")
    )

    with pytest.raises(ConflictError, match="has no price yet"):
        services.order_submit(actor=advisor, order=order)


def test_only_a_draft_is_submitted(advisor: Any, portfolio: Any, asset: Asset, run_jobs: Callable[..., Any]) -> None:
    order = submitted(run_jobs, advisor, portfolio=portfolio, asset=asset, side="buy", quantity=D("1"))

    with pytest.raises(ConflictError, match="Only a draft is submitted"):
        services.order_submit(actor=advisor, order=order)


def test_an_advisor_cannot_place_an_order_for_another_advisors_client(
    other_advisor: Any, portfolio: Any, asset: Asset
) -> None:
    from django.core.exceptions import PermissionDenied

    with pytest.raises(PermissionDenied):
        services.order_create(actor=other_advisor, portfolio=portfolio, asset=asset, side="buy", quantity=D("1"))


def test_order_events_are_append_only_in_the_database(advisor: Any, portfolio: Any, asset: Asset) -> None:
    order = services.order_create(actor=advisor, portfolio=portfolio, asset=asset, side="buy", quantity=D("1"))
    event = OrderEvent.objects.get(order=order)

    from django.db import DatabaseError, transaction

    with pytest.raises(DatabaseError), transaction.atomic():
        OrderEvent.objects.filter(pk=event.pk).update(message="rewritten")
    with pytest.raises(DatabaseError), transaction.atomic():
        OrderEvent.objects.filter(pk=event.pk).delete()


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_concurrent_orders_never_together_hold_more_cash_than_there_is(
    staff_roles: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    from accounts.tests.factories import AdvisorFactory

    monkeypatch.setattr(services, "_enqueue", lambda *args, **kwargs: None)  # the holds race, not the broker

    advisor = AdvisorFactory()
    portfolio = main_portfolio(ClientFactory(advisor=advisor))
    paper_account(portfolio)
    TransactionFactory(portfolio=portfolio, currency="USD", amount=D("1000"), date=TODAY - datetime.timedelta(days=1))
    asset = AssetFactory(currency="USD")
    orders = [
        services.order_create(
            actor=advisor,
            portfolio=portfolio,
            asset=asset,
            side="buy",
            quantity=D("6"),
            order_type="limit",
            limit_price=D("100"),
        )
        for _ in range(2)
    ]  # each holds 601.00 of the 1,000.00
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def submit(order: Order) -> None:
        try:
            barrier.wait()
            services.order_submit(actor=advisor, order=order)
            outcomes.append("held")
        except ConflictError:
            outcomes.append("refused")
        finally:
            connection.close()

    threads = [threading.Thread(target=submit, args=(order,)) for order in orders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(outcomes) == ["held", "refused"]
    assert cash_free(portfolio_id=portfolio.pk, currency="USD") == D("399.0000")


def test_a_fills_allocation_changes_only_through_its_fill(
    advisor: Any, portfolio: Any, asset: Asset, run_jobs: Callable[..., Any]
) -> None:
    from holdings.services import allocation_delete, allocation_update

    order = submitted(run_jobs, advisor, portfolio=portfolio, asset=asset, side="buy", quantity=D("2"))
    allocation = order.fills.get().allocation

    with pytest.raises(ConflictError, match="records a broker's fill"):
        allocation_update(actor=advisor, allocation=allocation, quantity=D("3"))
    with pytest.raises(ConflictError, match="records a broker's fill"):
        allocation_delete(actor=advisor, allocation=allocation)
    allocation.refresh_from_db()
    assert allocation.quantity == D("2")


class RefusingBroker(PaperBroker):
    """A broker that refuses every order it is sent, as a real one does an account without buying power."""

    def submit(self, ticket: OrderTicket) -> BrokerOrder:
        return BrokerOrder("refused-1", BrokerState.REJECTED, message="Insufficient buying power.")


def test_an_order_the_broker_refuses_at_once_goes_from_pending_to_rejected_and_frees_its_hold(
    settings: Any, advisor: Any, portfolio: Any, asset: Asset, run_jobs: Callable[..., Any]
) -> None:
    settings.TRADING_BROKER_KINDS["paper"]["BACKEND"] = "trading.tests.test_services.RefusingBroker"

    order = submitted(run_jobs, advisor, portfolio=portfolio, asset=asset, side="buy", quantity=D("1"))

    assert order.status == Status.REJECTED
    assert statuses(order) == [("", "draft"), ("draft", "pending"), ("pending", "rejected")]
    assert "Insufficient buying power" in OrderEvent.objects.filter(order=order).last().message
    assert cash_hold_amount(reference=order.hold_reference) == D("0")


def test_a_minimum_fee_per_partial_fill_is_held_for_so_the_fills_stay_covered(
    settings: Any, advisor: Any, asset: Asset, run_jobs: Callable[..., Any]
) -> None:
    paper_options(settings, fill_parts=2)
    portfolio = main_portfolio(ClientFactory(advisor=advisor))
    TransactionFactory(portfolio=portfolio, currency="USD", amount=D("1002"), date=TODAY - datetime.timedelta(days=3))
    paper_account(portfolio)
    order = submitted(
        run_jobs,
        advisor,
        portfolio=portfolio,
        asset=asset,
        side="buy",
        quantity=D("10"),
        order_type="limit",
        limit_price=D("100"),
    )
    assert cash_hold_amount(reference=order.hold_reference) == D("1002.0000")  # 1,000 + a 1.00 fee per part

    price_create(asset=asset, date=TODAY, close=D("100"))
    services.order_sync(order_id=order.pk)
    order = services.order_sync(order_id=order.pk)

    assert order.status == Status.FILLED
    assert not order.fills.filter(exceeded_hold=True).exists()
    assert cash_available(portfolio_id=portfolio.pk, currency="USD") == D("0.0000")


def test_a_fill_is_recorded_even_in_a_portfolio_closed_since_the_order(
    advisor: Any, portfolio: Any, asset: Asset, run_jobs: Callable[..., Any]
) -> None:
    order = submitted(
        run_jobs,
        advisor,
        portfolio=portfolio,
        asset=asset,
        side="buy",
        quantity=D("2"),
        order_type="limit",
        limit_price=D("90"),
        time_in_force="gtc",
    )
    portfolio_update(actor=advisor, portfolio=portfolio, closed_on=TODAY)

    price_create(asset=asset, date=TODAY, close=D("89"))
    order = services.order_sync(order_id=order.pk)

    assert order.status == Status.FILLED
    assert position(portfolio_id=portfolio.pk, asset_id=asset.pk) == D("2")


def test_one_orders_failure_does_not_stop_the_periodic_job_for_the_others(
    advisor: Any, portfolio: Any, asset: Asset, run_jobs: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = {"portfolio": portfolio, "asset": asset, "side": "buy", "quantity": D("1"), "order_type": "limit"}
    older = submitted(run_jobs, advisor, limit_price=D("90"), time_in_force="gtc", **limit)
    newer = submitted(run_jobs, advisor, limit_price=D("91"), time_in_force="gtc", **limit)
    sync = services.order_sync

    def failing_for_the_newer(*, order_id: int) -> Order:
        if order_id == newer.pk:
            raise ConflictError("Something about this one order.")
        return sync(order_id=order_id)

    monkeypatch.setattr(services, "order_sync", failing_for_the_newer)
    price_create(asset=asset, date=TODAY, close=D("80"))

    assert tasks.orders_poll() == {"sent": 0, "polled": 1, "expired": 0, "unreachable": 0, "failed": 1}
    older.refresh_from_db()
    assert older.status == Status.FILLED


def test_fills_made_while_a_cancel_raced_the_send_are_recorded_when_the_order_is_withdrawn(
    advisor: Any, portfolio: Any, asset: Asset, run_jobs: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(services, "_enqueue", lambda *args, **kwargs: None)  # each step run by hand, in race order
    order = services.order_create(actor=advisor, portfolio=portfolio, asset=asset, side="buy", quantity=D("2"))
    services.order_submit(actor=advisor, order=order)
    broker = broker_for(BrokerConnectionFactory())
    answer = broker.submit(services.ticket(order))  # the send job reached the broker...
    order = services.order_cancel(actor=advisor, order=order)  # ...while staff cancelled it here
    services.apply_broker_answer(actor=services.BROKER, order_id=order.pk, answer=answer)
    broker.fetch(services.ticket(order))  # the broker fills it before the withdrawal arrives

    services.order_withdraw(order_id=order.pk)

    order.refresh_from_db()
    assert order.status == Status.CANCELLED
    assert order.fills.count() == 1
    assert position(portfolio_id=portfolio.pk, asset_id=asset.pk) == D("2")


def test_a_day_order_that_expires_before_reaching_its_broker_is_withdrawn_there(
    advisor: Any, portfolio: Any, asset: Asset, monkeypatch: pytest.MonkeyPatch
) -> None:
    withdrawn: list[int] = []
    monkeypatch.setattr(
        services,
        "_enqueue",
        lambda name, **kwargs: withdrawn.append(kwargs["order_id"]) if name == "order_withdraw" else None,
    )
    order = services.order_create(actor=advisor, portfolio=portfolio, asset=asset, side="buy", quantity=D("1"))
    order = services.order_submit(actor=advisor, order=order)

    order = services.order_expire(order_id=order.pk, now=order.expires_at)

    assert order.status == Status.EXPIRED
    assert withdrawn == [order.pk]


def test_a_reverse_split_between_order_and_fill_shrinks_the_unit_hold_by_the_fills_share(
    advisor: Any, portfolio: Any, asset: Asset, run_jobs: Callable[..., Any]
) -> None:
    AllocationFactory(portfolio=portfolio, asset=asset, quantity=D("10"), date=TODAY - datetime.timedelta(days=5))
    with time_machine.travel(timezone.now() - datetime.timedelta(days=1)):
        order = submitted(
            run_jobs,
            advisor,
            portfolio=portfolio,
            asset=asset,
            side="sell",
            quantity=D("10"),
            order_type="limit",
            limit_price=D("200"),
            time_in_force="gtc",
        )
    split_create(actor=advisor, asset=asset, date=TODAY, new_units=D("1"), old_units=D("2"))
    assert unit_hold_quantity(reference=order.hold_reference) == D("5")

    fill = BrokerFill(broker_fill_id="F-1", quantity=D("4"), price=D("200"), executed_at=timezone.now())
    services.fill_record(order_id=order.pk, fill=fill)

    # The fill took 4 of the order's 10: the hold keeps 6/10 of what it held, in today's units.
    assert unit_hold_quantity(reference=order.hold_reference) == D("3")
