"""Broker adapters: one small interface (`base.Broker`), chosen per order by name from the TRADING_BROKERS setting."""

from .base import (
    Broker,
    BrokerError,
    BrokerFill,
    BrokerOrder,
    BrokerRefused,
    BrokerState,
    BrokerUnavailable,
    OrderTicket,
    broker_named,
    broker_names,
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
    "broker_named",
    "broker_names",
]
