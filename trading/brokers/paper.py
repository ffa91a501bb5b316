"""The paper broker: a broker simulated in our own database, the default, so that the whole order flow runs on a
laptop and in the tests.

It keeps its own book (`PaperOrder`, `PaperFill`), as a broker would, keyed by our client order id, so that a
submission sent twice places one order. Each `fetch` (the status poll) matches the open order once: a market order
fills at the asset's latest price; a limit order fills when a price recorded after the order was accepted crosses
its limit (a buy at or below it, a sell at or above it), at that price. With `fill_parts` above 1 each match fills
that fraction of the order (the last one the rest), which is how partial fills are tried. Fees follow a schedule: a
rate of the gross amount with a minimum per fill. `offline` makes every call fail as an outage does.
"""

import uuid
from decimal import ROUND_DOWN, ROUND_UP, Decimal

from django.db import transaction
from django.utils import timezone

from holdings.models import Price
from portfolio_site.money import AMOUNT_QUANTUM, QUANTITY_QUANTUM

from ..models import PaperFill, PaperOrder
from .base import BrokerFill, BrokerOrder, BrokerRefused, BrokerState, BrokerUnavailable, OrderTicket

OPEN_STATES = (BrokerState.ACCEPTED, BrokerState.PARTIALLY_FILLED)


class PaperBroker:
    def __init__(
        self,
        *,
        name: str,
        fee_rate: str = "0",
        minimum_fee: str = "0",
        fill_parts: int = 1,
        offline: bool = False,
    ) -> None:
        self.name = name
        self.fee_rate = Decimal(fee_rate)
        self.minimum_fee = Decimal(minimum_fee)
        self.fill_parts = max(1, int(fill_parts))
        self.offline = offline

    def estimate_fees(self, *, side: str, quantity: Decimal, price: Decimal) -> Decimal:
        # Each part of a partially filled order pays its own fee (its minimum included): the estimate covers them all.
        return self._fees(quantity * price / self.fill_parts) * self.fill_parts

    def check(self) -> str:
        self._reachable()
        return "The paper broker is simulated in this database: it fills orders against our own prices."

    def submit(self, ticket: OrderTicket) -> BrokerOrder:
        self._reachable()
        with transaction.atomic():
            paper, created = PaperOrder.objects.select_for_update().get_or_create(
                client_order_id=ticket.client_order_id,
                defaults={
                    "broker_order_id": f"paper-{uuid.uuid4().hex}",
                    "asset_id": ticket.asset_id,
                    "side": ticket.side,
                    "quantity": ticket.quantity,
                    "order_type": ticket.order_type,
                    "limit_price": ticket.limit_price,
                    "state": BrokerState.ACCEPTED,
                    "accepted_at": timezone.now(),
                },
            )
            if (
                created
                and ticket.order_type == "market"
                and not Price.objects.filter(asset_id=ticket.asset_id).exists()
            ):
                paper.state = BrokerState.REJECTED
                paper.message = f"No market price for {ticket.symbol}: a market order cannot be filled."
                paper.save(update_fields=["state", "message"])
            return self._answer(paper)

    def cancel(self, ticket: OrderTicket) -> BrokerOrder:
        self._reachable()
        with transaction.atomic():
            paper = self._find(ticket)
            if paper.state in OPEN_STATES:
                paper.state = BrokerState.CANCELLED
                paper.message = "Cancelled at the client's request."
                paper.save(update_fields=["state", "message"])
            return self._answer(paper)

    def fetch(self, ticket: OrderTicket) -> BrokerOrder:
        self._reachable()
        with transaction.atomic():
            paper = self._find(ticket)
            if paper.state in OPEN_STATES:
                self._match(paper)
            return self._answer(paper)

    # --- the simulated market ---

    def _reachable(self) -> None:
        if self.offline:
            raise BrokerUnavailable(f"The {self.name} broker is offline.")

    def _find(self, ticket: OrderTicket) -> PaperOrder:
        paper = PaperOrder.objects.select_for_update().filter(client_order_id=ticket.client_order_id).first()
        if paper is None:
            raise BrokerRefused(f"The {self.name} broker has no order {ticket.client_order_id}.")
        return paper

    def _match(self, paper: PaperOrder) -> None:
        price = self._crossing_price(paper)
        if price is None:
            return
        remaining = paper.quantity - paper.filled_quantity
        part = (paper.quantity / self.fill_parts).quantize(QUANTITY_QUANTUM, rounding=ROUND_DOWN)
        number = paper.fills.count() + 1
        last = number >= self.fill_parts or part <= 0 or part >= remaining
        quantity = remaining if last else part
        PaperFill.objects.create(
            order=paper,
            fill_id=f"{paper.broker_order_id}-{number}",
            quantity=quantity,
            price=price,
            fees=self._fees(quantity * price),
            executed_at=timezone.now(),
        )
        paper.filled_quantity += quantity
        paper.state = BrokerState.FILLED if paper.filled_quantity == paper.quantity else BrokerState.PARTIALLY_FILLED
        paper.save(update_fields=["filled_quantity", "state"])

    def _crossing_price(self, paper: PaperOrder) -> Decimal | None:
        prices = Price.objects.filter(asset_id=paper.asset_id).order_by("-date", "-updated_at")
        if paper.order_type == "market":
            latest = prices.values_list("close", flat=True).first()
            return latest if latest else None
        assert paper.limit_price is not None  # held by trading_order_limit_price_for_limit_orders
        recent = prices.filter(updated_at__gt=paper.accepted_at, close__gt=0)
        crossing = (
            recent.filter(close__lte=paper.limit_price)
            if paper.side == "buy"
            else recent.filter(close__gte=paper.limit_price)
        )
        return crossing.values_list("close", flat=True).first()

    def _fees(self, gross: Decimal) -> Decimal:
        if not self.fee_rate and not self.minimum_fee:
            return Decimal("0")
        return max(self.minimum_fee, gross * self.fee_rate).quantize(AMOUNT_QUANTUM, rounding=ROUND_UP)

    def _answer(self, paper: PaperOrder) -> BrokerOrder:
        fills = tuple(
            BrokerFill(
                broker_fill_id=fill.fill_id,
                quantity=fill.quantity,
                price=fill.price,
                fees=fill.fees,
                executed_at=fill.executed_at,
            )
            for fill in paper.fills.all()
        )
        return BrokerOrder(
            broker_order_id=paper.broker_order_id, state=BrokerState(paper.state), fills=fills, message=paper.message
        )
