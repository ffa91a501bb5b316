"""Broker adapters: one small interface (`base.Broker`), built per broker connection (`trading.connections`)."""

from .base import (
    Broker,
    BrokerError,
    BrokerFill,
    BrokerOrder,
    BrokerRefused,
    BrokerState,
    BrokerUnavailable,
    OrderTicket,
)

__all__ = [
    "Broker",
    "BrokerError",
    "BrokerFill",
    "BrokerOrder",
    "BrokerRefused",
    "BrokerState",
    "BrokerUnavailable",
    "OrderTicket",
]
