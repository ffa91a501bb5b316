"""The order lifecycle: create, submit (placing the hold), send to the broker, record its fills, cancel, expire.

Every state change is written with its `OrderEvent` in the same transaction (the audit trail). Writes lock the
order's portfolio first, then the order, as every write that moves a portfolio's cash or units does, so that a fill,
a cancel and a withdrawal on one portfolio queue up instead of racing. Calls to a broker are made outside any
database transaction (a slow broker holds no lock) and their answers applied afterwards, under the locks, to the
order as it then stands: the answer of a submission, a poll or a cancel can arrive in any order and each is applied
once (fills by their broker id, state changes only forwards).
"""

import datetime
import logging
import zoneinfo
from decimal import ROUND_UP, Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from clients.models import Portfolio
from clients.services import portfolio_lock
from holdings.holds import unit_hold_place, unit_hold_release, unit_hold_resize
from holdings.models import Asset
from holdings.selectors import latest_prices, unit_hold_quantity, units_shortfall
from holdings.services import allocation_create, short_position_message
from ledger.selectors import cash_hold_amount, cash_shortfall
from ledger.services import cash_hold_place, cash_hold_release, cash_hold_resize, overdraft_message
from portfolio_site import display
from portfolio_site.errors import ConflictError, InsufficientCash, InsufficientUnits
from portfolio_site.imports.run import CommandLineActor
from portfolio_site.jobs.base import enqueue
from portfolio_site.money import AMOUNT_QUANTUM, to_quantity

from .brokers import BrokerError, BrokerFill, BrokerOrder, BrokerRefused, BrokerState, OrderTicket
from .connections import broker_for, order_account
from .models import BrokerConnection, Fill, Order, OrderEvent

logger = logging.getLogger(__name__)

Status = Order.Status

# What a broker's state means for the order, when it ends it.
FINAL_STATES = {
    BrokerState.CANCELLED: Status.CANCELLED,
    BrokerState.REJECTED: Status.REJECTED,
    BrokerState.EXPIRED: Status.EXPIRED,
}


class BrokerActor(CommandLineActor):
    """Who acts when a broker's report is applied (a fill, an expiry): the firm's back-office itself, which sees every
    client. Events it writes name no user."""


BROKER = BrokerActor()


def _user(actor: Any) -> Any:
    return actor if getattr(actor, "pk", None) else None


def trading_day(moment: datetime.datetime) -> datetime.date:
    """The trade date of something that happened at `moment`: its date where the firm trades (TRADING_TIMEZONE)."""
    return moment.astimezone(zoneinfo.ZoneInfo(settings.TRADING_TIMEZONE)).date()


def day_end(moment: datetime.datetime) -> datetime.datetime:
    """When a day order placed at `moment` expires: the end of that day in TRADING_TIMEZONE."""
    zone = zoneinfo.ZoneInfo(settings.TRADING_TIMEZONE)
    next_day = moment.astimezone(zone).date() + datetime.timedelta(days=1)
    return datetime.datetime.combine(next_day, datetime.time.min, tzinfo=zone).astimezone(datetime.UTC)


def ticket(order: Order) -> OrderTicket:
    return OrderTicket(
        client_order_id=order.client_order_id,
        broker_order_id=order.broker_order_id,
        asset_id=order.asset_id,
        symbol=order.asset.ticker,
        currency=order.asset.currency,
        side=order.side,
        quantity=order.quantity,
        order_type=order.order_type,
        limit_price=order.limit_price,
        time_in_force=order.time_in_force,
        expires_at=order.expires_at,
        account_id=order.account_id,
    )


def _event(*, order: Order, actor: Any, from_status: str, message: str = "") -> OrderEvent:
    return OrderEvent.objects.create(
        client_id=order.client_id,
        order=order,
        actor=_user(actor),
        from_status=from_status,
        to_status=order.status,
        message=message[:2000],
    )


def _locked(*, actor: Any, order: Order, for_movement: bool = False) -> Order:
    """The order as it stands, its portfolio and then its row locked (the one lock order of every trading write)."""
    portfolio_lock(actor=actor, portfolio_id=order.portfolio_id, for_movement=for_movement)
    return Order.objects.select_for_update(of=("self",)).select_related("asset", "portfolio").get(pk=order.pk)


# --- holds -------------------------------------------------------------------------------------


def _hold_price(order: Order) -> Decimal:
    """The price per unit a buy's hold is sized at: its limit, or the latest price plus the market-order buffer."""
    if order.order_type == Order.Type.LIMIT:
        assert order.limit_price is not None  # held by trading_order_limit_price_for_limit_orders
        return order.limit_price
    latest = latest_prices(asset_ids=[order.asset_id])
    close = latest[0]["price_close"] if latest else None
    if not close:
        raise ConflictError(
            f"{order.asset} has no price yet: a market buy cannot be covered without one. Give a limit price, or "
            "record a price first.",
            field="order_type",
        )
    return Decimal(close) * (1 + Decimal(settings.TRADING_MARKET_ORDER_BUFFER))


def cash_to_hold(*, order: Order, quantity: Decimal) -> Decimal:
    """The cash a buy of `quantity` units holds: units at the hold price, plus the broker's estimated fees, rounded up
    to the ledger's precision so that the hold never falls a fraction short."""
    if quantity <= 0:
        return Decimal("0")
    assert order.hold_price is not None
    fees = broker_for(order.connection).estimate_fees(side=order.side, quantity=quantity, price=order.hold_price)
    return (quantity * order.hold_price + fees).quantize(AMOUNT_QUANTUM, rounding=ROUND_UP)


def _place_hold(*, actor: Any, order: Order) -> str:
    """Holds what the order may spend; refused (409) in the order's own words, naming what is missing."""
    currency = order.asset.currency
    if order.side == Order.Side.BUY:
        order.hold_price = _hold_price(order)
        amount = cash_to_hold(order=order, quantity=order.quantity)
        try:
            cash_hold_place(
                actor=actor,
                portfolio_id=order.portfolio_id,
                currency=currency,
                amount=amount,
                reference=order.hold_reference,
            )
        except InsufficientCash as short:
            raise ConflictError(
                f"Insufficient cash in {order.portfolio.name} for this order: it needs "
                f"{display.money(amount, currency)} (units at {display.number(order.hold_price)} plus estimated fees), "
                f"{display.money(short.available, currency)} is available: {display.money(short.missing, currency)} "
                "is missing.",
                field="quantity",
            ) from None
        return f"Holding {display.money(amount, currency)}."
    try:
        unit_hold_place(
            actor=actor,
            portfolio_id=order.portfolio_id,
            asset_id=order.asset_id,
            quantity=order.quantity,
            reference=order.hold_reference,
        )
    except InsufficientUnits as short:
        raise ConflictError(
            f"Not enough units of {order.asset} in {order.portfolio.name} for this order: it sells "
            f"{display.number(order.quantity)} units; {display.number(short.available)} are available, "
            f"{display.number(short.missing)} short.",
            field="quantity",
        ) from None
    return f"Holding {display.number(order.quantity)} units of {order.asset}."


def _shrink_hold(*, actor: Any, order: Order, fill: BrokerFill) -> None:
    """Takes what a fill spends off its order's hold, which a fill only ever shrinks (released when the order is
    done). A buy's hold loses the fill's cost, and keeps no more than the rest of the order needs (a fill cheaper than
    its hold price frees the difference); a sell's loses the fill's share of the units, in the units the hold is
    counted in today, so a split since the order was placed is followed."""
    remaining = order.remaining_quantity - fill.quantity
    if order.side == Order.Side.BUY:
        held = cash_hold_amount(reference=order.hold_reference)
        cost = fill.quantity * fill.price + fill.fees + fill.taxes
        left = min(held - cost, cash_to_hold(order=order, quantity=remaining)) if remaining > 0 else Decimal("0")
        cash_hold_resize(
            actor=actor, reference=order.hold_reference, amount=max(left, Decimal("0")).quantize(AMOUNT_QUANTUM)
        )
    else:
        held = unit_hold_quantity(reference=order.hold_reference)
        left = held * remaining / order.remaining_quantity if remaining > 0 else Decimal("0")
        unit_hold_resize(actor=actor, reference=order.hold_reference, quantity=to_quantity(min(left, held)))


def _release_hold(*, actor: Any, order: Order) -> None:
    if order.side == Order.Side.BUY:
        cash_hold_release(actor=actor, reference=order.hold_reference)
    else:
        unit_hold_release(actor=actor, reference=order.hold_reference)


# --- staff's actions ---------------------------------------------------------------------------


@transaction.atomic
def order_create(
    *,
    actor: Any,
    portfolio: Portfolio,
    asset: Asset,
    side: str,
    quantity: Decimal,
    order_type: str = Order.Type.MARKET,
    limit_price: Decimal | None = None,
    time_in_force: str = Order.TimeInForce.DAY,
    connection: BrokerConnection | None = None,
    notes: str = "",
) -> Order:
    """Creates an order as a draft, to be submitted (`order_submit`), for the portfolio's account at `connection` (or
    at its only active connection when none is named). Refused in a portfolio the actor may not see or that is
    closed, and through a connection that is inactive or where the portfolio has no account."""
    locked = portfolio_lock(actor=actor, portfolio_id=portfolio.pk)
    account = order_account(portfolio=locked, connection=connection)
    order = Order(
        client_id=locked.client_id,
        portfolio=locked,
        asset=asset,
        side=side,
        quantity=quantity,
        order_type=order_type,
        limit_price=limit_price,
        time_in_force=time_in_force,
        connection=account.connection,
        account_id=account.account_id,
        notes=notes,
        placed_by=_user(actor),
    )
    order.full_clean()
    order.save()
    _event(order=order, actor=actor, from_status="", message="Created as a draft.")
    return order


@transaction.atomic
def order_submit(*, actor: Any, order: Order) -> Order:
    """Submits a draft: holds its cash (a buy) or units (a sell), then a job sends it to its broker. ConflictError
    (409) naming what is missing when the portfolio's available cash or units cannot cover it."""
    order = _locked(actor=actor, order=order, for_movement=True)
    if order.status != Status.DRAFT:
        raise ConflictError(f"Only a draft is submitted; this order is {order.get_status_display().lower()}.")
    _check_route(order)
    held = _place_hold(actor=actor, order=order)
    now = timezone.now()
    order.status = Status.PENDING
    order.submitted_at = now
    order.expires_at = day_end(now) if order.time_in_force == Order.TimeInForce.DAY else None
    order.save()
    _event(order=order, actor=actor, from_status=Status.DRAFT, message=f"Submitted. {held}")
    _enqueue("order_send", requested_by=actor, order_id=order.pk)
    return order


def _check_route(order: Order) -> None:
    """A draft goes out only the way it was placed: through a connection still active and usable, to the portfolio's
    account there as it was when the order was created (a connection switched off after its keys leaked stops its
    drafts too)."""
    connection = BrokerConnection.objects.get(pk=order.connection_id)
    try:
        account = order_account(portfolio=order.portfolio, connection=connection)
    except ValidationError as refusal:
        raise ConflictError(" ".join(refusal.messages), field="connection") from None
    if account.account_id != order.account_id:
        raise ConflictError(
            f"The portfolio's account {order.account_id} at {connection} has changed since the order was created: "
            "cancel it and place it again.",
            field="connection",
        )
    try:
        broker_for(connection)
    except BrokerError as error:
        raise ConflictError(f"{connection} cannot be used: {error}", field="connection") from None
    order.connection = connection


def _enqueue(job_name: str, /, **kwargs: Any) -> None:
    """Enqueues one of trading's jobs after the commit. Imported here: the jobs module imports this one."""
    from . import tasks

    enqueue(getattr(tasks, job_name), **kwargs)


def order_cancel(*, actor: Any, order: Order) -> Order:
    """Cancels an order: a draft at once; an open order at its broker first, then here, releasing what it still held.

    ConflictError when the order has ended (filled, cancelled, rejected, expired) or fills before the broker cancels
    it (its fills are recorded all the same); BrokerUnavailable when the broker cannot be reached (the order stays
    open: try again)."""
    with transaction.atomic():
        current = _locked(actor=actor, order=order)
        if current.status not in Order.CANCELLABLE:
            raise ConflictError(f"This order is {current.get_status_display().lower()}: it cannot be cancelled.")
        if current.status == Status.DRAFT or current.broker_order_id is None:
            # Not at the broker yet (a draft, or waiting to be sent): it ends here, and a send in flight sees that.
            _finish(
                actor=actor, order=current, status=Status.CANCELLED, message="Cancelled before reaching the broker."
            )
            if current.submitted_at is not None:
                _enqueue("order_withdraw", requested_by=actor, order_id=current.pk)
            return current
    try:
        answer = broker_for(current.connection).cancel(ticket(current))
    except BrokerRefused as refusal:
        raise ConflictError(f"The broker refused the cancel: {refusal}") from None
    current = apply_broker_answer(actor=actor, order_id=current.pk, answer=answer)
    if current.status != Status.CANCELLED:
        raise ConflictError(
            f"The broker did not cancel the order: it is {current.get_status_display().lower()}."
            + (f" {answer.message}" if answer.message else "")
        )
    return current


def _finish(*, actor: Any, order: Order, status: str, message: str) -> None:
    """Ends an open order (or a draft) with a final status, releasing its hold; the caller holds the locks."""
    before = order.status
    if before in Order.OPEN:
        _release_hold(actor=actor, order=order)
    order.status = status
    order.closed_at = timezone.now()
    order.save(update_fields=["status", "closed_at", "broker_message", "updated_at"])
    _event(order=order, actor=actor, from_status=before, message=message)


# --- the broker's side (jobs) ----------------------------------------------------------------


def order_send(*, order_id: int) -> Order:
    """Sends a submitted order to its broker and applies the answer. Idempotent: the broker knows the order by our
    client order id, so a send retried after an outage (BrokerUnavailable propagates, for the job to retry) places
    it once; an order no longer waiting to be sent is left alone."""
    order = Order.objects.select_related("asset", "connection").get(pk=order_id)
    if order.status != Status.PENDING:
        return order
    Order.objects.filter(pk=order_id).update(send_attempts=order.send_attempts + 1)
    try:
        answer = broker_for(order.connection).submit(ticket(order))
    except BrokerRefused as refusal:
        return _reject(order_id=order_id, message=str(refusal))
    return apply_broker_answer(actor=BROKER, order_id=order_id, answer=answer)


def order_withdraw(*, order_id: int) -> None:
    """Makes sure an order that ended here while it was being sent (cancelled, expired) is not left open at its
    broker, and records whatever the broker filled of it first: those fills happened."""
    order = Order.objects.select_related("asset", "connection").get(pk=order_id)
    try:
        answer = broker_for(order.connection).cancel(ticket(order))
    except BrokerRefused:  # the broker never had it: nothing to withdraw
        return
    apply_broker_answer(actor=BROKER, order_id=order_id, answer=answer)


def _reject(*, order_id: int, message: str) -> Order:
    with transaction.atomic():
        order = _locked_for_broker(order_id)
        if order.status in Order.OPEN:
            order.broker_message = message
            _finish(actor=BROKER, order=order, status=Status.REJECTED, message=f"Rejected by the broker: {message}")
        return order


def _locked_for_broker(order_id: int) -> Order:
    """`_locked` for a broker's report, which names the order by id only: its portfolio is read first, to lock it."""
    portfolio_id = Order.objects.values_list("portfolio_id", flat=True).get(pk=order_id)
    return _locked(actor=BROKER, order=Order(pk=order_id, portfolio_id=portfolio_id))


def order_sync(*, order_id: int) -> Order:
    """Asks the broker how an open order stands and applies the answer: its new fills, and its end if it ended."""
    order = Order.objects.select_related("asset", "connection").get(pk=order_id)
    if order.status not in Order.OPEN or order.broker_order_id is None:
        return order
    return apply_broker_answer(
        actor=BROKER, order_id=order_id, answer=broker_for(order.connection).fetch(ticket(order))
    )


def apply_broker_answer(*, actor: Any, order_id: int, answer: BrokerOrder) -> Order:
    """Applies what a broker said of an order: its id there (a first answer), each fill not yet recorded, and its end
    (cancelled, rejected, expired) when it ended. Each fill is its own transaction: one recorded stays recorded."""
    with transaction.atomic():
        order = _locked_for_broker(order_id)
        if order.broker_order_id is None:
            order.broker_order_id = answer.broker_order_id
            order.broker_message = answer.message
            accepted = answer.state in (BrokerState.ACCEPTED, BrokerState.PARTIALLY_FILLED, BrokerState.FILLED)
            if order.status == Status.PENDING and accepted:
                order.status = Status.SUBMITTED
                order.save(update_fields=["broker_order_id", "broker_message", "status", "updated_at"])
                _event(
                    order=order,
                    actor=actor,
                    from_status=Status.PENDING,
                    message=_said("Accepted by the broker.", answer),
                )
                if answer.state != BrokerState.FILLED:
                    # Ask again shortly: a market order fills within moments (at once where jobs run in-process).
                    _enqueue("order_sync", order_id=order.pk, countdown=settings.TRADING_FIRST_POLL_SECONDS)
            else:
                # Refused at once (ended below, from pending), or ended here while it was on its way (cancelled,
                # expired): then the broker has it now, and must drop it.
                order.save(update_fields=["broker_order_id", "broker_message", "updated_at"])
                if order.status in Order.FINAL and accepted:
                    _enqueue("order_withdraw", order_id=order.pk)
    for fill in answer.fills:
        fill_record(order_id=order_id, fill=fill)
    final = FINAL_STATES.get(answer.state)
    with transaction.atomic():
        order = _locked(actor=BROKER, order=order)
        if final is not None and order.status in Order.OPEN:
            order.broker_message = answer.message
            _finish(actor=actor, order=order, status=final, message=_said(f"{final.label} at the broker.", answer))
        return order


def _said(what: str, answer: BrokerOrder) -> str:
    return f"{what} The broker said: {answer.message}" if answer.message else what


@transaction.atomic
def fill_record(*, order_id: int, fill: BrokerFill) -> Fill:
    """Records a fill of an order once (a fill reported again is the one recorded), as an allocation through the
    holdings service, which settles it in cash through the ledger, all in this transaction.

    The order's hold shrinks first to what its remaining units need, so the fill spends the cash (or units) held for
    it. A fill is recorded even when it costs more than was held and available, because it happened at the broker:
    then it is flagged (`exceeded_hold`, with the shortfall) for staff, the one case where a balance may go negative.
    """
    order = _locked_for_broker(order_id)
    recorded = Fill.objects.filter(order=order, broker_fill_id=fill.broker_fill_id).first()
    if recorded is not None:
        return recorded
    if fill.quantity <= 0 or fill.quantity > order.remaining_quantity:
        raise ConflictError(
            f"The broker reports a fill of {fill.quantity} units of order {order.pk}, of which "
            f"{order.remaining_quantity} remain: not recorded; the order needs a look."
        )
    remaining = order.remaining_quantity - fill.quantity
    if order.status in Order.OPEN:
        _shrink_hold(actor=BROKER, order=order, fill=fill)
    day = trading_day(fill.executed_at)
    allocation = allocation_create(
        actor=BROKER,
        portfolio=order.portfolio,
        asset=order.asset,
        kind=order.side,
        quantity=fill.quantity,
        price=fill.price,
        fees=fill.fees,
        taxes=fill.taxes,
        date=day,
        notes=f"Fill {fill.broker_fill_id} of order {order.pk} ({order.client_order_id})",
        overdraft_allowed=True,
        owned_by=f"a broker's fill ({fill.broker_fill_id}) of order {order.pk}",
    )
    shortfall = _shortfall(order=order, since=day)
    recorded = Fill(
        client_id=order.client_id,
        order=order,
        quantity=fill.quantity,
        price=fill.price,
        fees=fill.fees,
        taxes=fill.taxes,
        executed_at=fill.executed_at,
        broker_fill_id=fill.broker_fill_id,
        allocation=allocation,
        exceeded_hold=bool(shortfall),
        shortfall=shortfall[:300],
    )
    recorded.full_clean(exclude=["allocation"])
    recorded.save()
    before = order.status
    order.filled_quantity += fill.quantity
    if order.status in Order.OPEN:
        order.status = Status.FILLED if remaining == 0 else Status.PARTIALLY_FILLED
        if order.status == Status.FILLED:
            order.closed_at = timezone.now()
    order.save(update_fields=["filled_quantity", "status", "closed_at", "updated_at"])
    message = f"Filled {fill.quantity.normalize():f} at {fill.price.normalize():f} ({fill.broker_fill_id})."
    if shortfall:
        message += f" Exceeded what was held and available: {shortfall}"
        logger.warning("Fill %s of order %s exceeded its hold: %s", fill.broker_fill_id, order.pk, shortfall)
    _event(order=order, actor=None, from_status=before, message=message)
    return recorded


def _shortfall(*, order: Order, since: datetime.date) -> str:
    """What the portfolio is short of after a fill, in the words of the refusal a withdrawal would get; "" if none."""
    portfolio, asset = order.portfolio, order.asset
    if order.side == Order.Side.BUY:
        found = cash_shortfall(portfolio_id=portfolio.pk, currency=asset.currency, since=since)
        what = f"fill of {order}"
        return (
            overdraft_message(portfolio=portfolio, currency=asset.currency, what=what, shortfall=found) if found else ""
        )
    units = units_shortfall(portfolio_id=portfolio.pk, asset_id=asset.pk, since=since)
    return short_position_message(portfolio=portfolio, asset=asset, shortfall=units) if units else ""


def order_expire(*, order_id: int, now: datetime.datetime | None = None) -> Order:
    """Ends a day order past its day: its last fills are fetched first, then what is left is cancelled at the broker
    and the order marked expired, its hold released."""
    now = now or timezone.now()
    order = Order.objects.select_related("asset", "connection").get(pk=order_id)
    if order.status not in Order.OPEN or order.expires_at is None or order.expires_at > now:
        return order
    if order.broker_order_id is not None:
        broker = broker_for(order.connection)
        apply_broker_answer(actor=BROKER, order_id=order_id, answer=broker.fetch(ticket(order)))
        try:
            answer = broker.cancel(ticket(order))
        except BrokerRefused:
            answer = None
        if answer is not None:
            # The cancel is the broker's end of the day here: what it answers is an expiry, not a cancellation.
            state = BrokerState.EXPIRED if answer.state == BrokerState.CANCELLED else answer.state
            apply_broker_answer(
                actor=BROKER,
                order_id=order_id,
                answer=BrokerOrder(answer.broker_order_id, state, answer.fills, answer.message),
            )
    with transaction.atomic():
        order = _locked(actor=BROKER, order=order)
        if order.status in Order.OPEN:
            _finish(actor=BROKER, order=order, status=Status.EXPIRED, message="Expired at the end of its day.")
            if order.broker_order_id is None:
                _enqueue("order_withdraw", order_id=order.pk)  # a send in flight may still reach the broker
        return order


def orders_due(*, now: datetime.datetime | None = None) -> dict[str, list[int]]:
    """The orders the periodic job looks after: to send (waiting longer than a minute: a send job that failed for
    good), to poll (open at the broker), and to expire (day orders past their day)."""
    now = now or timezone.now()
    open_orders = Order.objects.filter(status__in=Order.OPEN)
    return {
        "send": list(
            open_orders.filter(
                status=Status.PENDING,
                broker_order_id__isnull=True,
                submitted_at__lt=now - datetime.timedelta(minutes=1),
            ).values_list("pk", flat=True)
        ),
        "expire": list(open_orders.filter(expires_at__lte=now).values_list("pk", flat=True)),
        "poll": list(
            open_orders.filter(broker_order_id__isnull=False).exclude(expires_at__lte=now).values_list("pk", flat=True)
        ),
    }
