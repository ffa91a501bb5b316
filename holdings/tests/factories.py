import datetime
import io
from decimal import Decimal
from typing import Any

import factory
from django.utils import timezone
from factory.django import DjangoModelFactory

from clients.services import portfolios_history_changed
from holdings.models import (
    Allocation,
    Asset,
    AssetDescriptionProposal,
    AssetImage,
    Dividend,
    FxRate,
    Price,
    Split,
    UnitHold,
)
from ledger.models import Transaction
from ledger.tests.factories import TransactionFactory, place


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


class SplitFactory(DjangoModelFactory):
    """A 2 for 1 split of a new asset (no holder: a row, not a service's write) on successive days."""

    class Meta:
        model = Split

    asset = factory.SubFactory(AssetFactory)
    date = factory.Sequence(lambda n: datetime.date(2026, 1, 1) + datetime.timedelta(days=n))
    new_units = Decimal("2")
    old_units = Decimal("1")


class FxRateFactory(DjangoModelFactory):
    """EUR/USD on successive days unless told otherwise."""

    class Meta:
        model = FxRate

    base = "EUR"
    quote = "USD"
    date = factory.Sequence(lambda n: datetime.date(2026, 1, 1) + datetime.timedelta(days=n))
    rate = Decimal("1.0800000000")


class AllocationFactory(DjangoModelFactory):
    """A transfer in by default (no cash), in the client's main portfolio unless given one, its history marked
    changed as the services mark it. `BuyFactory` makes a settled buy whose cash leg agrees with it."""

    class Meta:
        model = Allocation

    client = None
    portfolio = None
    asset = factory.SubFactory(AssetFactory)
    kind = Allocation.Kind.TRANSFER_IN
    quantity = Decimal("10")
    price = Decimal("100")
    fees = Decimal("0")
    date = datetime.date(2026, 2, 1)
    settlement = None

    @classmethod
    def _adjust_kwargs(cls, **kwargs: Any) -> dict[str, Any]:
        return place(kwargs)

    @classmethod
    def _create(cls, model_class: Any, *args: Any, **kwargs: Any) -> Allocation:
        # As the services do: the portfolio's derived figures (snapshots, daily values, caches) go stale.
        allocation = super()._create(model_class, *args, **kwargs)
        portfolios_history_changed(portfolios=[allocation.portfolio_id], since=allocation.date)
        return allocation


class BuyFactory(AllocationFactory):
    kind = Allocation.Kind.BUY

    @classmethod
    def _adjust_kwargs(cls, **kwargs: Any) -> dict[str, Any]:
        kwargs = place(kwargs)
        if kwargs["settlement"] is None:
            kwargs["settlement"] = TransactionFactory(
                portfolio=kwargs["portfolio"],
                kind=Transaction.Kind.BUY,
                currency=kwargs["asset"].currency,
                amount=kwargs["quantity"] * kwargs["price"] + kwargs["fees"],
                date=kwargs["date"],
            )
        return kwargs


class SellFactory(AllocationFactory):
    """A settled sell: its cash leg brings the gross less the fees."""

    kind = Allocation.Kind.SELL

    @classmethod
    def _adjust_kwargs(cls, **kwargs: Any) -> dict[str, Any]:
        kwargs = place(kwargs)
        if kwargs["settlement"] is None:
            kwargs["settlement"] = TransactionFactory(
                portfolio=kwargs["portfolio"],
                kind=Transaction.Kind.SELL,
                currency=kwargs["asset"].currency,
                amount=kwargs["quantity"] * kwargs["price"] - kwargs["fees"],
                date=kwargs["date"],
            )
        return kwargs


class DividendFactory(DjangoModelFactory):
    """A paid dividend with its cash leg (gross less withholding, on the pay date), in the client's main portfolio
    unless given one. Rows made here bypass the services (no entitlement check): use them to set up history."""

    class Meta:
        model = Dividend

    client = None
    portfolio = None
    asset = factory.SubFactory(AssetFactory)
    ex_date = datetime.date(2026, 3, 2)
    pay_date = datetime.date(2026, 3, 16)
    currency = None
    units = Decimal("10")
    gross = Decimal("25")
    withholding_tax = Decimal("0")
    cash = None

    @classmethod
    def _adjust_kwargs(cls, **kwargs: Any) -> dict[str, Any]:
        kwargs = place(kwargs)
        kwargs["currency"] = kwargs["currency"] or kwargs["asset"].currency
        if kwargs["cash"] is None:
            kwargs["cash"] = TransactionFactory(
                portfolio=kwargs["portfolio"],
                kind=Transaction.Kind.DIVIDEND,
                currency=kwargs["currency"],
                amount=kwargs["gross"] - kwargs["withholding_tax"],
                date=kwargs["pay_date"],
            )
        return kwargs


class UnitHoldFactory(DjangoModelFactory):
    """Units on hold in the client's main portfolio unless given one, expressed in the units of `as_of`. Rows made
    here bypass the services (and their check of the units free): use them to set up state."""

    class Meta:
        model = UnitHold

    client = None
    portfolio = None
    asset = factory.SubFactory(AssetFactory)
    quantity = Decimal("5")
    as_of = factory.LazyFunction(timezone.localdate)
    reference = factory.Sequence(lambda n: f"hold:{n}")

    @classmethod
    def _adjust_kwargs(cls, **kwargs: Any) -> dict[str, Any]:
        return place(kwargs)


def image_bytes(
    fmt: str = "PNG", size: tuple[int, int] = (40, 30), color: tuple[int, int, int] = (200, 30, 30)
) -> bytes:
    """A small picture made here, in `fmt` (a Pillow format name): tests need no image files of their own."""
    from PIL import Image  # only the image tests need Pillow at import time

    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format=fmt)
    return out.getvalue()


class AssetImageFactory(DjangoModelFactory):
    """An image of an asset, stored through the upload service (a real, stripped PNG in storage)."""

    class Meta:
        model = AssetImage

    asset = factory.SubFactory(AssetFactory)
    kind = AssetImage.Kind.FACTSHEET

    @classmethod
    def _create(cls, model_class: Any, *args: Any, **kwargs: Any) -> AssetImage:
        from holdings.images.services import asset_image_upload

        data = kwargs.pop("data", None) or image_bytes()
        return asset_image_upload(
            asset=kwargs["asset"],
            file=io.BytesIO(data),
            kind=kwargs.get("kind", AssetImage.Kind.FACTSHEET),
            uploaded_by=kwargs.get("uploaded_by"),
            name=kwargs.get("original_name", "factsheet.png"),
        )


class AssetDescriptionProposalFactory(DjangoModelFactory):
    """A proposed (described, undecided) description of an image."""

    class Meta:
        model = AssetDescriptionProposal

    image = factory.SubFactory(AssetImageFactory)
    status = AssetDescriptionProposal.Status.PROPOSED
    text = factory.Faker("sentence")
    provider = "openai"
    model = "vision-test"
    described_at = factory.LazyFunction(timezone.now)
