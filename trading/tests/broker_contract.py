"""The contract every broker adapter keeps, as tests any adapter's test module runs against its own broker.

A module subclasses `BrokerContract` and provides the fixtures `broker` (the adapter under test, reachable),
`ticket` (a market buy it can fill) and `fill_ticket(ticket)` (makes the broker fill it: a price for the paper
broker, a scripted answer for a remote one).
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from trading.brokers import Broker, BrokerRefused, BrokerState, OrderTicket


class BrokerContract:
    def test_submitting_twice_places_one_order(self, broker: Broker, ticket: OrderTicket) -> None:
        first = broker.submit(ticket)
        again = broker.submit(ticket)

        assert first.broker_order_id == again.broker_order_id
        assert first.state in (BrokerState.ACCEPTED, BrokerState.PARTIALLY_FILLED, BrokerState.FILLED)

    def test_an_unknown_order_is_refused(self, broker: Broker, ticket: OrderTicket) -> None:
        unknown = dataclasses.replace(ticket, client_order_id="pb-never-sent")

        with pytest.raises(BrokerRefused):
            broker.fetch(unknown)

    def test_cancelling_an_open_order_ends_it(self, broker: Broker, ticket: OrderTicket) -> None:
        broker.submit(ticket)

        assert broker.cancel(ticket).state == BrokerState.CANCELLED
        assert broker.fetch(ticket).state == BrokerState.CANCELLED

    def test_a_filled_order_reports_its_fills_and_stays_filled_when_cancelled(
        self, broker: Broker, ticket: OrderTicket, fill_ticket: Callable[[OrderTicket], Any]
    ) -> None:
        broker.submit(ticket)
        fill_ticket(ticket)

        filled = broker.fetch(ticket)
        assert filled.state == BrokerState.FILLED
        assert sum(fill.quantity for fill in filled.fills) == ticket.quantity
        assert len({fill.broker_fill_id for fill in filled.fills}) == len(filled.fills)
        assert broker.cancel(ticket).state == BrokerState.FILLED

    def test_fees_are_estimated_without_placing_anything(self, broker: Broker, ticket: OrderTicket) -> None:
        from decimal import Decimal

        fees = broker.estimate_fees(side=ticket.side, quantity=ticket.quantity, price=Decimal("100"))

        assert fees >= 0
        with pytest.raises(BrokerRefused):
            broker.fetch(ticket)
