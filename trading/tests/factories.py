from decimal import Decimal
from typing import Any

import factory
from factory.django import DjangoModelFactory

from holdings.tests.factories import AssetFactory
from ledger.tests.factories import place
from trading.models import Order


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
