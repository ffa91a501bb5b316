import datetime
from decimal import Decimal

import factory
from factory.django import DjangoModelFactory

from clients.tests.factories import ClientFactory
from holdings.models import Allocation, Asset, Price
from ledger.models import Transaction
from ledger.tests.factories import TransactionFactory


class AssetFactory(DjangoModelFactory):
    class Meta:
        model = Asset
        django_get_or_create = ("ticker", "exchange")

    ticker = factory.Sequence(lambda n: f"TCK{n}")
    name = factory.Faker("company")
    exchange = "XNAS"
    currency = "USD"
    asset_type = Asset.AssetType.EQUITY


class PriceFactory(DjangoModelFactory):
    class Meta:
        model = Price

    asset = factory.SubFactory(AssetFactory)
    date = factory.Sequence(lambda n: datetime.date(2026, 1, 1) + datetime.timedelta(days=n))
    close = Decimal("100.0000000000")


class AllocationFactory(DjangoModelFactory):
    """A transfer in by default (no cash). `BuyFactory` makes a settled buy whose cash leg agrees with it."""

    class Meta:
        model = Allocation

    client = factory.SubFactory(ClientFactory)
    asset = factory.SubFactory(AssetFactory)
    kind = Allocation.Kind.TRANSFER_IN
    quantity = Decimal("10")
    price = Decimal("100")
    fees = Decimal("0")
    date = datetime.date(2026, 2, 1)
    settlement = None


class BuyFactory(AllocationFactory):
    kind = Allocation.Kind.BUY
    settlement = factory.SubFactory(
        TransactionFactory,
        client=factory.SelfAttribute("..client"),
        kind=Transaction.Kind.BUY,
        currency=factory.SelfAttribute("..asset.currency"),
        amount=factory.LazyAttribute(
            lambda tx: tx.factory_parent.quantity * tx.factory_parent.price + tx.factory_parent.fees
        ),
        date=factory.SelfAttribute("..date"),
    )
