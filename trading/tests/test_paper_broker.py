"""The paper broker keeps the broker contract, and simulates a market: fills, fees, partial fills, outages."""

import datetime
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from holdings.models import Asset
from holdings.tests.factories import AssetFactory, PriceFactory
from trading.brokers import BrokerState, BrokerUnavailable, OrderTicket
from trading.brokers.paper import PaperBroker
from trading.models import PaperOrder
from trading.tests.broker_contract import BrokerContract

D = Decimal


@pytest.fixture
def asset(db: None) -> Asset:
    return AssetFactory(ticker="ACME", currency="USD")


def ticket_for(asset: Asset, **fields: Any) -> OrderTicket:
    values: dict[str, Any] = {
        "client_order_id": "pb-1",
        "broker_order_id": None,
        "asset_id": asset.pk,
        "symbol": asset.ticker,
        "currency": asset.currency,
        "side": "buy",
        "quantity": D("10"),
        "order_type": "market",
        "limit_price": None,
        "time_in_force": "day",
    }
    return OrderTicket(**{**values, **fields})


class TestPaperBrokerContract(BrokerContract):
    @pytest.fixture
    def broker(self) -> PaperBroker:
        return PaperBroker(name="paper", fee_rate="0.001", minimum_fee="1")

    @pytest.fixture
    def ticket(self, asset: Asset) -> OrderTicket:
        # A limit far below the market: open until the test moves the price.
        PriceFactory(asset=asset, date=timezone.localdate() - datetime.timedelta(days=1), close=D("100"))
        return ticket_for(asset, order_type="limit", limit_price=D("50"))

    @pytest.fixture
    def fill_ticket(self, asset: Asset) -> Any:
        return lambda ticket: PriceFactory(asset=asset, date=timezone.localdate(), close=D("49"))


def test_a_market_order_fills_at_the_latest_price_with_the_fee_schedule(asset: Asset) -> None:
    PriceFactory(asset=asset, date=timezone.localdate() - datetime.timedelta(days=2), close=D("90"))
    PriceFactory(asset=asset, date=timezone.localdate() - datetime.timedelta(days=1), close=D("100"))
    broker = PaperBroker(name="paper", fee_rate="0.001", minimum_fee="5")

    broker.submit(ticket_for(asset))
    answer = broker.fetch(ticket_for(asset))

    assert answer.state == BrokerState.FILLED
    [fill] = answer.fills
    # 0.1% of 1,000 is 1.00, below the minimum of 5.00.
    assert (fill.quantity, fill.price, fill.fees) == (D("10"), D("100"), D("5.0000"))


def test_partial_fills_come_in_equal_parts_the_last_one_the_rest(asset: Asset) -> None:
    PriceFactory(asset=asset, date=timezone.localdate(), close=D("100"))
    broker = PaperBroker(name="paper", fill_parts=3)
    ticket = ticket_for(asset)
    broker.submit(ticket)

    parts = [broker.fetch(ticket) for _ in range(3)]

    assert [answer.state for answer in parts] == [
        BrokerState.PARTIALLY_FILLED,
        BrokerState.PARTIALLY_FILLED,
        BrokerState.FILLED,
    ]
    assert [fill.quantity for fill in parts[-1].fills] == [D("3.3333333333"), D("3.3333333333"), D("3.3333333334")]


def test_a_market_order_without_any_price_is_rejected(asset: Asset) -> None:
    answer = PaperBroker(name="paper").submit(ticket_for(asset))

    assert answer.state == BrokerState.REJECTED
    assert "No market price" in answer.message


def test_a_limit_order_ignores_prices_recorded_before_it_was_accepted(asset: Asset) -> None:
    PriceFactory(asset=asset, date=timezone.localdate(), close=D("40"))
    broker = PaperBroker(name="paper")
    ticket = ticket_for(asset, order_type="limit", limit_price=D("50"))
    broker.submit(ticket)

    assert broker.fetch(ticket).state == BrokerState.ACCEPTED


def test_an_offline_paper_broker_answers_as_an_outage(asset: Asset) -> None:
    with pytest.raises(BrokerUnavailable):
        PaperBroker(name="paper", offline=True).submit(ticket_for(asset))
    assert not PaperOrder.objects.exists()
