"""The broker interface: submit, cancel, fetch an order's state and fills; estimate fees for a hold.

An adapter sees an `OrderTicket` (what the broker needs to know of an order), never our models, and answers plain
`BrokerOrder` values; the trading services turn those into state changes, fills and events. Submission must be
idempotent by `client_order_id`: a submission retried after an outage names the same order, and the broker answers
with that order instead of placing a second one. Adapters are built from the broker connections kept in the
database (`trading.connections.broker_for`), with the options their kind shares (settings.TRADING_BROKER_KINDS).
"""

import datetime
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Protocol


class BrokerError(Exception):
    """The broker could not do what was asked."""


class BrokerUnavailable(BrokerError):
    """The broker did not answer, or answered that it is busy or down: try again later (the job retries)."""


class BrokerRefused(BrokerError):
    """The broker refused the request for good (an order it will not accept, a cancel of a filled order)."""


class BrokerState(StrEnum):
    """An order's state at the broker, in the words every adapter maps its own onto."""

    ACCEPTED = "accepted"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"
    EXPIRED = "expired"


@dataclass(frozen=True)
class OrderTicket:
    """What a broker is told of an order."""

    client_order_id: str
    broker_order_id: str | None
    asset_id: int
    symbol: str
    currency: str
    side: str
    quantity: Decimal
    order_type: str
    limit_price: Decimal | None
    time_in_force: str
    expires_at: datetime.datetime | None = None
    # The portfolio's account at the broker (BrokerAccount.account_id): an adapter whose credentials trade one
    # account refuses an order meant for another.
    account_id: str = ""


@dataclass(frozen=True)
class BrokerFill:
    broker_fill_id: str
    quantity: Decimal
    price: Decimal
    executed_at: datetime.datetime
    fees: Decimal = Decimal("0")
    taxes: Decimal = Decimal("0")


@dataclass(frozen=True)
class BrokerOrder:
    """An order as the broker sees it: its id there, its state, every fill so far, and its last word."""

    broker_order_id: str
    state: BrokerState
    fills: tuple[BrokerFill, ...] = field(default_factory=tuple)
    message: str = ""


class Broker(Protocol):
    name: str

    def submit(self, ticket: OrderTicket) -> BrokerOrder:
        """Places the order, or answers the one already placed under its client order id."""
        ...

    def cancel(self, ticket: OrderTicket) -> BrokerOrder:
        """Cancels what is left of the order; answers its state after (filled, if it filled first)."""
        ...

    def fetch(self, ticket: OrderTicket) -> BrokerOrder:
        """The order's state and fills; BrokerRefused when the broker has no such order."""
        ...

    def estimate_fees(self, *, side: str, quantity: Decimal, price: Decimal) -> Decimal:
        """What the broker would charge for the trade, for a hold that must cover it."""
        ...

    def check(self) -> str:
        """Proves the connection works without placing anything; answers a short description of the account.
        BrokerRefused when the credentials are refused, BrokerUnavailable when the broker does not answer."""
        ...
