import datetime
from decimal import Decimal
from typing import Any

import factory
from django.utils import timezone
from factory.django import DjangoModelFactory

from holdings.tests.factories import AssetFactory, BuyFactory, SellFactory
from ledger.tests.factories import place
from portfolio_site.crypto import encrypt
from trading.models import (
    BrokerAccount,
    BrokerConnection,
    Fill,
    ModelAssignment,
    ModelPortfolio,
    ModelWeight,
    Order,
    OrderEvent,
    RebalanceProposal,
)

PAPER = "Paper broker"


class BrokerConnectionFactory(DjangoModelFactory):
    """A paper broker connection (the one named "Paper broker" unless another name is given)."""

    class Meta:
        model = BrokerConnection
        django_get_or_create = ["name"]

    name = PAPER
    kind = BrokerConnection.Kind.PAPER
    environment = BrokerConnection.Environment.PAPER


class AlpacaConnectionFactory(DjangoModelFactory):
    """An Alpaca paper-trading connection with the given credentials (encrypted as the services store them)."""

    class Meta:
        model = BrokerConnection

    class Params:
        key = "PKTESTKEY0000000001"
        secret = "s3cr3t-DO-NOT-LEAK-8f2b9c"

    name = factory.Sequence(lambda n: f"Alpaca {n}")
    kind = BrokerConnection.Kind.ALPACA
    environment = BrokerConnection.Environment.PAPER
    api_key = factory.LazyAttribute(lambda connection: encrypt(connection.key))
    api_secret = factory.LazyAttribute(lambda connection: encrypt(connection.secret))
    credentials_set_at = factory.LazyFunction(timezone.now)


class BrokerAccountFactory(DjangoModelFactory):
    """A portfolio's account at a connection (the paper broker unless given), numbered after the portfolio."""

    class Meta:
        model = BrokerAccount
        django_get_or_create = ["connection", "portfolio"]

    connection = factory.SubFactory(BrokerConnectionFactory)
    portfolio = None
    client = factory.SelfAttribute("portfolio.client")
    account_id = factory.LazyAttribute(lambda account: f"PAPER-{account.portfolio.pk}")


def paper_account(portfolio: Any, connection: BrokerConnection | None = None) -> BrokerAccount:
    """The portfolio's account at `connection` (the paper broker unless given), opened if it has none."""
    account: BrokerAccount = BrokerAccountFactory(
        portfolio=portfolio, connection=connection or BrokerConnectionFactory()
    )
    return account


class OrderFactory(DjangoModelFactory):
    """A draft market buy of 10 units, in the client's main portfolio unless given one, through its account at the
    paper broker unless another connection is given (a row, not a service's write: submit it through
    `trading.services.order_submit`)."""

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
    connection = None

    @classmethod
    def _adjust_kwargs(cls, **kwargs: Any) -> dict[str, Any]:
        kwargs = place(kwargs)
        account = paper_account(kwargs["portfolio"], kwargs.get("connection"))
        kwargs["connection"] = account.connection
        kwargs.setdefault("account_id", account.account_id)
        return kwargs


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


class ModelPortfolioFactory(DjangoModelFactory):
    """A model portfolio with no weights and all in cash (100%): give it weights with `ModelWeightFactory` and a
    `cash_weight` that sums with them to 100, or through `trading.rebalancing.model_portfolio_save`."""

    class Meta:
        model = ModelPortfolio

    name = factory.Sequence(lambda n: f"Model {n}")
    cash_weight = Decimal("100")
    drift_band = Decimal("5")
    minimum_trade = Decimal("0")
    fractional = False


class ModelWeightFactory(DjangoModelFactory):
    class Meta:
        model = ModelWeight

    model = factory.SubFactory(ModelPortfolioFactory)
    asset = factory.SubFactory(AssetFactory)
    weight = Decimal("50")


class ModelAssignmentFactory(DjangoModelFactory):
    """The client's main portfolio (unless given one) following a model (a new one unless given)."""

    class Meta:
        model = ModelAssignment

    client = None
    portfolio = None
    model = factory.SubFactory(ModelPortfolioFactory)

    @classmethod
    def _adjust_kwargs(cls, **kwargs: Any) -> dict[str, Any]:
        return place(kwargs)


def empty_proposal(model: ModelPortfolio, base_currency: str) -> dict[str, Any]:
    """The document of a proposal with nothing to do (a portfolio worth nothing), as `proposal_document` writes it."""
    zero = "0.00"
    return {
        "model": model.pk,
        "model_name": model.name,
        "base_currency": base_currency,
        **dict.fromkeys(["total_value", "cash_before", "cash_after", "cash_target"], zero),
        **dict.fromkeys(["cash_weight_before", "cash_weight_after"], "0"),
        "cash_weight_target": f"{model.cash_weight.normalize():f}",
        "drift_band": f"{model.drift_band.normalize():f}",
        **{key: [] for key in ["orders", "weights", "cash", "rates"]},
        "warnings": ["The portfolio is worth nothing (or less): there is nothing to rebalance."],
    }


class RebalanceProposalFactory(DjangoModelFactory):
    """A stored proposal with no orders, for lists (a row: `rebalance_proposal_create` computes real ones)."""

    class Meta:
        model = RebalanceProposal

    client = None
    portfolio = None
    model = factory.SubFactory(ModelPortfolioFactory)
    proposal = None
    basis = "0" * 64

    @classmethod
    def _adjust_kwargs(cls, **kwargs: Any) -> dict[str, Any]:
        kwargs = place(kwargs)
        if kwargs["proposal"] is None:
            kwargs["proposal"] = empty_proposal(kwargs["model"], kwargs["portfolio"].base_currency)
        return kwargs
