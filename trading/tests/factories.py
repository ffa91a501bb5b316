import datetime
from decimal import Decimal
from typing import Any

import factory
from django.utils import timezone
from factory.django import DjangoModelFactory

from holdings.tests.factories import AssetFactory, BuyFactory, SellFactory
from ledger.tests.factories import place
from trading.models import Fill, Order, OrderEvent


class OrderFactory(DjangoModelFactory):
    """A draft market buy of 10 units, in the client's main portfolio unless given one (a row, not a service's
    write: submit it through `trading.services.order_submit`)."""

    class Meta:
        model = Order

    client = None
    portfolio = None
    asset = factory.SubFactory(AssetFactory)
    side = Order.Side.BUY
    quantity = Decimal("10")
    order_type = Order.Type.MARKET
    limit_price = None
    time_in_force = Order.TimeInForce.DAY
    broker = "paper"

    @classmethod
    def _adjust_kwargs(cls, **kwargs: Any) -> dict[str, Any]:
        return place(kwargs)


class OrderEventFactory(DjangoModelFactory):
    """A step of an order's audit trail (a row, as the services write them)."""

    class Meta:
        model = OrderEvent

    order = factory.SubFactory(OrderFactory)
    client = factory.SelfAttribute("order.client")
    from_status = Order.Status.DRAFT
    to_status = Order.Status.PENDING
    message = ""


class FillFactory(DjangoModelFactory):
    """A fill of a submitted order (a new one unless given), with the settled allocation a fill records: a buy or a
    sell in the order's portfolio and asset, of the fill's quantity at its price. A row, not the service's write (no
    hold consumed, the order's filled quantity unchanged): use it to set up lists."""

    class Meta:
        model = Fill

    order = factory.SubFactory(OrderFactory, status=Order.Status.SUBMITTED)
    client = factory.SelfAttribute("order.client")
    quantity = factory.SelfAttribute("order.quantity")
    price = Decimal("100")
    fees = Decimal("1")
    taxes = Decimal("0")
    executed_at = factory.LazyFunction(timezone.now)
    broker_fill_id = factory.Sequence(lambda n: f"fill-{n}")
    allocation = factory.LazyAttribute(
        lambda fill: (BuyFactory if fill.order.side == Order.Side.BUY else SellFactory)(
            portfolio=fill.order.portfolio,
            asset=fill.order.asset,
            quantity=fill.quantity,
            price=fill.price,
            fees=fill.fees,
            date=datetime.date(2026, 2, 1),
        )
    )
