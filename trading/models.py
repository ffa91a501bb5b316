"""Orders, their fills and their audit trail.

An order is placed by staff, held against the portfolio's cash or units while it is open (the holds belong to the
ledger and holdings, referred to by `Order.hold_reference`), sent to a broker by a job, and filled there; each fill
becomes an allocation through the holdings service, which settles it in cash through the ledger like every trade.
"""

import uuid
from decimal import Decimal

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, URLValidator
from django.db import models
from django.utils import timezone

from clients.scope import ClientOwnedQuerySet
from portfolio_site.crypto import EncryptedTextField, decrypt, encrypt
from portfolio_site.historical import TrackedHistory
from portfolio_site.models import TimeStampedModel, notes_field
from portfolio_site.money import amount_field, quantity_field
from portfolio_site.scoping import ReferenceDataQuerySet


class OrderSide(models.TextChoices):
    BUY = "buy", "Buy"
    SELL = "sell", "Sell"


class OrderType(models.TextChoices):
    MARKET = "market", "Market"
    LIMIT = "limit", "Limit"


class TimeInForce(models.TextChoices):
    DAY = "day", "Day"
    GTC = "gtc", "Good till cancelled"


class OrderStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    # Submitted by staff, its hold placed, not yet acknowledged by the broker (a job sends it, and retries while
    # the broker is unreachable).
    PENDING = "pending", "Submitted, awaiting the broker"
    SUBMITTED = "submitted", "Submitted"
    PARTIALLY_FILLED = "partially_filled", "Partially filled"
    FILLED = "filled", "Filled"
    CANCELLED = "cancelled", "Cancelled"
    REJECTED = "rejected", "Rejected"
    EXPIRED = "expired", "Expired"


def new_client_order_id() -> str:
    """Our id of an order at its broker, made once when the order is created: sending it again names the same order,
    which is what makes submission idempotent."""
    return f"pb-{uuid.uuid4().hex}"


class BrokerKind(models.TextChoices):
    PAPER = "paper", "Paper (simulated here)"
    ALPACA = "alpaca", "Alpaca (trading API v2)"


# The kinds that sign in to a remote API, and so need credentials.
REMOTE_BROKER_KINDS = (BrokerKind.ALPACA,)


class BrokerEnvironment(models.TextChoices):
    PAPER = "paper", "Paper trading"
    LIVE = "live", "Live trading"


class BrokerConnectionQuerySet(ReferenceDataQuerySet["BrokerConnection"]):
    def active(self) -> "BrokerConnectionQuerySet":
        return self.filter(is_active=True)


class BrokerConnection(TimeStampedModel):
    """A firm-wide connection to a broker: its kind, where its API answers and the credentials it signs in with.

    The credentials are the most dangerous secrets the product holds. They are encrypted at rest
    (`portfolio_site.crypto`, rotated with every other encrypted field), never shown again once set (the doors say
    when they were set, and take new ones), and left out of the change history, which records only that they changed
    (`credentials_set_at`). Superusers and Operations manage connections; advisors choose among the active ones.
    """

    Kind = BrokerKind
    Environment = BrokerEnvironment
    REMOTE_KINDS = REMOTE_BROKER_KINDS

    name = models.CharField(max_length=80, unique=True)
    kind = models.CharField(max_length=16, choices=BrokerKind.choices)
    environment = models.CharField(
        max_length=5,
        choices=BrokerEnvironment.choices,
        default=BrokerEnvironment.PAPER,
        help_text="Paper trading (the broker's simulated account) or live trading (real money).",
    )
    base_url = models.URLField(
        blank=True,
        validators=[URLValidator(schemes=["https", "http"])],
        help_text="Where the broker's API answers, when not its usual address for the environment (a proxy, a "
        "regional endpoint).",
    )
    api_key = EncryptedTextField(blank=True, editable=False)
    api_secret = EncryptedTextField(blank=True, editable=False)
    credentials_set_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="When the API key and secret were last set."
    )
    is_active = models.BooleanField(
        default=True, help_text="Inactive: no new orders are placed through it; its open orders are still followed."
    )
    last_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_check_ok = models.BooleanField(null=True, blank=True, editable=False)
    last_check_message = models.CharField(max_length=500, blank=True, editable=False)

    objects = BrokerConnectionQuerySet.as_manager()
    history = TrackedHistory(excluded_fields=["updated_at", "api_key", "api_secret"])

    class Meta:
        ordering = ["name"]
        permissions = [("check_brokerconnection", "Can test a broker connection")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(kind__in=BrokerKind.values),
                name="trading_brokerconnection_kind_valid",
                violation_error_message="Unknown kind of broker.",
            ),
            models.CheckConstraint(
                condition=models.Q(environment__in=BrokerEnvironment.values),
                name="trading_brokerconnection_environment_valid",
                violation_error_message="A connection trades on paper or live.",
            ),
            models.CheckConstraint(
                condition=~models.Q(kind=BrokerKind.PAPER) | models.Q(environment=BrokerEnvironment.PAPER),
                name="trading_brokerconnection_paper_is_paper",
                violation_error_message="The paper broker trades on paper only.",
            ),
            models.CheckConstraint(
                condition=~models.Q(kind__in=REMOTE_BROKER_KINDS)
                | (~models.Q(api_key="") & ~models.Q(api_secret="") & models.Q(credentials_set_at__isnull=False)),
                name="trading_brokerconnection_remote_has_credentials",
                violation_error_message="A connection to a remote broker needs an API key and secret.",
            ),
            models.CheckConstraint(
                condition=~models.Q(name=""),
                name="trading_brokerconnection_name_not_blank",
                violation_error_message="A connection needs a name.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_remote(self) -> bool:
        return self.kind in self.REMOTE_KINDS

    @property
    def has_credentials(self) -> bool:
        return bool(self.api_key and self.api_secret)

    def set_credentials(self, *, api_key: str, api_secret: str) -> None:
        """Replaces the API key and secret (encrypted; saved by the caller). Both at once: a key and a secret from two
        different pairs never sign in."""
        self.api_key = encrypt(api_key)
        self.api_secret = encrypt(api_secret)
        self.credentials_set_at = timezone.now()

    def credentials(self) -> tuple[str, str]:
        """The API key and secret in plaintext, for the adapter alone."""
        if not self.has_credentials:
            return "", ""
        return decrypt(self.api_key), decrypt(self.api_secret)


class BrokerAccountQuerySet(ClientOwnedQuerySet["BrokerAccount"]):
    client_path = "client"


class BrokerAccount(TimeStampedModel):
    """A portfolio's account at a broker (its custodian account there): a portfolio's orders go through a connection
    it has an account at, and name that account. Its client is its portfolio's client."""

    connection = models.ForeignKey(BrokerConnection, on_delete=models.PROTECT, related_name="accounts")
    # Checked by one key, not three: the (portfolio, client) foreign key (clients.migration_ops) holds both to exist
    # and to agree, so neither has a constraint of its own.
    client = models.ForeignKey("clients.Client", on_delete=models.PROTECT, related_name="+", db_constraint=False)
    portfolio = models.ForeignKey(
        "clients.Portfolio", on_delete=models.PROTECT, related_name="broker_accounts", db_constraint=False
    )
    account_id = models.CharField("account id", max_length=64, help_text="The account's number at the broker.")

    objects = BrokerAccountQuerySet.as_manager()
    history = TrackedHistory(excluded_fields=["updated_at"])

    class Meta:
        ordering = ["connection__name", "account_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["connection", "portfolio"],
                name="trading_brokeraccount_one_per_portfolio",
                violation_error_message="The portfolio already has an account at this connection.",
            ),
            models.CheckConstraint(
                condition=~models.Q(account_id=""),
                name="trading_brokeraccount_account_id_not_blank",
                violation_error_message="An account needs its id at the broker.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.connection} {self.account_id}"

    def clean(self) -> None:
        super().clean()
        if self.portfolio_id is not None and self.client_id is not None and self.portfolio.client_id != self.client_id:
            raise ValidationError({"portfolio": "The portfolio belongs to another client."})


class OrderQuerySet(ClientOwnedQuerySet["Order"]):
    client_path = "client"

    def open(self) -> "OrderQuerySet":
        return self.filter(status__in=Order.OPEN)


class Order(TimeStampedModel):
    """An instruction to buy or sell units of an asset for a portfolio. Its client is its portfolio's client (held to
    agree by a (portfolio, client) foreign key, as on every row hanging off a portfolio)."""

    Side = OrderSide
    Type = OrderType
    TimeInForce = TimeInForce
    Status = OrderStatus
    # Open at the broker (or on its way there): holding cash or units.
    OPEN = (OrderStatus.PENDING, OrderStatus.SUBMITTED, OrderStatus.PARTIALLY_FILLED)
    FINAL = (OrderStatus.FILLED, OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.EXPIRED)
    CANCELLABLE = (OrderStatus.DRAFT, *OPEN)

    # Checked by one key, not three: the (portfolio, client) foreign key (clients.migration_ops) holds both to exist
    # and to agree, so neither has a constraint of its own.
    client = models.ForeignKey("clients.Client", on_delete=models.PROTECT, related_name="orders", db_constraint=False)
    portfolio = models.ForeignKey(
        "clients.Portfolio", on_delete=models.PROTECT, related_name="orders", db_constraint=False
    )
    asset = models.ForeignKey("holdings.Asset", on_delete=models.PROTECT, related_name="orders")
    side = models.CharField(max_length=4, choices=OrderSide.choices)
    quantity = quantity_field(help_text="Units to buy or sell; always positive.")
    order_type = models.CharField(max_length=6, choices=OrderType.choices, default=OrderType.MARKET)
    limit_price = quantity_field(
        null=True,
        blank=True,
        help_text="For a limit order: the highest price per unit a buy pays, the lowest a sell accepts (asset's "
        "currency).",
    )
    time_in_force = models.CharField(max_length=3, choices=TimeInForce.choices, default=TimeInForce.DAY)
    status = models.CharField(max_length=16, choices=OrderStatus.choices, default=OrderStatus.DRAFT)
    connection = models.ForeignKey(
        BrokerConnection,
        on_delete=models.PROTECT,
        related_name="orders",
        help_text="The broker connection it is placed through.",
    )
    account_id = models.CharField(
        "account id",
        max_length=64,
        editable=False,
        help_text="The portfolio's account at the broker, as it was when the order was created.",
    )
    client_order_id = models.CharField(
        max_length=64, unique=True, default=new_client_order_id, editable=False, help_text="Our id at the broker."
    )
    broker_order_id = models.CharField(  # noqa: DJ001 (NULL until the broker acknowledges: no collisions on "")
        max_length=64, null=True, blank=True, editable=False, help_text="The broker's id of the order."
    )
    filled_quantity = quantity_field(default=Decimal("0"), editable=False)
    hold_price = quantity_field(
        null=True,
        blank=True,
        editable=False,
        help_text="The price per unit a buy's cash hold was sized at when submitted: its limit, or the latest price "
        "plus the market-order buffer. What is left of the hold is sized at it too.",
    )
    notes = notes_field()
    placed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    submitted_at = models.DateTimeField(null=True, blank=True, editable=False)
    expires_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="A day order's end of day (TRADING_TIMEZONE)."
    )
    closed_at = models.DateTimeField(null=True, blank=True, editable=False)
    broker_message = models.TextField(blank=True, editable=False, help_text="The broker's last word on the order.")
    send_attempts = models.PositiveIntegerField(default=0, editable=False)

    objects = OrderQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [
            ("submit_order", "Can submit orders to a broker"),
            ("cancel_order", "Can cancel orders"),
        ]
        indexes = [
            models.Index(fields=["status", "expires_at"], name="trading_order_status_expiry"),
            models.Index(fields=["portfolio", "status"], name="trading_order_portfolio_status"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(quantity__gt=0),
                name="trading_order_quantity_positive",
                violation_error_message="The quantity must be greater than zero.",
            ),
            models.CheckConstraint(
                condition=models.Q(side__in=OrderSide.values),
                name="trading_order_side_valid",
                violation_error_message="An order buys or sells.",
            ),
            models.CheckConstraint(
                condition=models.Q(order_type__in=OrderType.values),
                name="trading_order_type_valid",
                violation_error_message="An order is a market or a limit order.",
            ),
            models.CheckConstraint(
                condition=models.Q(time_in_force__in=TimeInForce.values),
                name="trading_order_time_in_force_valid",
                violation_error_message="An order is good for the day or till cancelled.",
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=OrderStatus.values),
                name="trading_order_status_valid",
                violation_error_message="Unknown order status.",
            ),
            models.CheckConstraint(
                condition=models.Q(order_type=OrderType.LIMIT, limit_price__gt=0)
                | models.Q(order_type=OrderType.MARKET, limit_price__isnull=True),
                name="trading_order_limit_price_for_limit_orders",
                violation_error_message="A limit order needs a limit price above zero; a market order has none.",
            ),
            models.CheckConstraint(
                condition=models.Q(filled_quantity__gte=0, filled_quantity__lte=models.F("quantity")),
                name="trading_order_filled_within_quantity",
                violation_error_message="An order cannot be filled beyond its quantity.",
            ),
            models.CheckConstraint(
                condition=~models.Q(status=OrderStatus.FILLED) | models.Q(filled_quantity=models.F("quantity")),
                name="trading_order_filled_means_all_units",
                violation_error_message="An order is filled when all its units are.",
            ),
            models.UniqueConstraint(
                fields=["connection", "broker_order_id"],
                name="trading_order_broker_order_id_unique",
                violation_error_message="The broker already has an order with this id.",
            ),
        ]

    def __str__(self) -> str:
        what = f"{self.get_side_display()} {self.quantity.normalize():f} {self.asset}"
        if self.order_type == OrderType.LIMIT and self.limit_price is not None:
            what += f" at {self.limit_price.normalize():f}"
        return f"Order {self.pk}: {what}"

    @property
    def hold_reference(self) -> str:
        """How the ledger and holdings name this order's hold: they know no orders, only the reference."""
        return f"order:{self.client_order_id}"

    @property
    def remaining_quantity(self) -> Decimal:
        return self.quantity - self.filled_quantity

    @property
    def is_open(self) -> bool:
        return self.status in self.OPEN

    def clean(self) -> None:
        super().clean()
        if self.portfolio_id is not None and self.client_id is not None and self.portfolio.client_id != self.client_id:
            raise ValidationError({"portfolio": "The portfolio belongs to another client."})
        if self.order_type == OrderType.LIMIT and self.limit_price is None:
            raise ValidationError({"limit_price": "A limit order needs a limit price."})
        if self.order_type == OrderType.MARKET and self.limit_price is not None:
            raise ValidationError({"limit_price": "A market order has no limit price."})


class FillQuerySet(ClientOwnedQuerySet["Fill"]):
    client_path = "client"


class Fill(TimeStampedModel):
    """Units of an order executed at the broker, and the allocation that records them in the portfolio."""

    client = models.ForeignKey("clients.Client", on_delete=models.PROTECT, related_name="fills")
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="fills")
    quantity = quantity_field()
    price = quantity_field(help_text="Per unit, in the asset's currency.")
    fees = amount_field(default=Decimal("0"), help_text="In the asset's currency.")
    taxes = amount_field(default=Decimal("0"), help_text="In the asset's currency.")
    executed_at = models.DateTimeField()
    broker_fill_id = models.CharField(
        max_length=64, help_text="The broker's id of the fill: reported twice, kept once."
    )
    allocation = models.OneToOneField(
        "holdings.Allocation", on_delete=models.PROTECT, related_name="fill", editable=False
    )
    exceeded_hold = models.BooleanField(
        default=False,
        help_text="The fill cost more cash (or sold more units) than the order held and the portfolio had "
        "available: recorded anyway, because it happened at the broker, and left for staff to resolve.",
    )
    shortfall = models.CharField(max_length=300, blank=True, help_text="What the fill left short, when it did.")

    objects = FillQuerySet.as_manager()

    class Meta:
        ordering = ["-executed_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(quantity__gt=0),
                name="trading_fill_quantity_positive",
                violation_error_message="A fill's quantity must be greater than zero.",
            ),
            models.CheckConstraint(
                condition=models.Q(price__gt=0),
                name="trading_fill_price_positive",
                violation_error_message="A fill's price must be greater than zero.",
            ),
            models.CheckConstraint(
                condition=models.Q(fees__gte=0, taxes__gte=0),
                name="trading_fill_costs_not_negative",
                violation_error_message="A fill's fees and taxes are never negative.",
            ),
            models.UniqueConstraint(
                fields=["order", "broker_fill_id"],
                name="trading_fill_broker_fill_id_unique_per_order",
                violation_error_message="This fill of the order is already recorded.",
            ),
        ]

    def __str__(self) -> str:
        return f"Fill {self.broker_fill_id}: {self.quantity.normalize():f} at {self.price.normalize():f}"


class OrderEventQuerySet(ClientOwnedQuerySet["OrderEvent"]):
    client_path = "client"


class OrderEvent(models.Model):
    """One change of an order's state: the audit trail. Append-only: written by the trading services, never changed
    or deleted (the database refuses it on PostgreSQL; the model refuses it everywhere)."""

    client = models.ForeignKey("clients.Client", on_delete=models.PROTECT, related_name="+")
    order = models.ForeignKey(Order, on_delete=models.PROTECT, related_name="events")
    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
        help_text="Who acted; empty when the broker or a job did.",
    )
    from_status = models.CharField(max_length=16, choices=OrderStatus.choices, blank=True)
    to_status = models.CharField(max_length=16, choices=OrderStatus.choices)
    message = models.TextField(blank=True, help_text="What happened, in the broker's words where it spoke.")

    objects = OrderEventQuerySet.as_manager()

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.from_status or 'new'} → {self.to_status}"

    def save(self, *args: object, **kwargs: object) -> None:
        if self.pk is not None:
            raise ValidationError("Order events are append-only.")
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise ValidationError("Order events are append-only.")


class PaperOrder(models.Model):
    """The paper broker's own book: the orders it was sent, as a broker keeps them. Not ours to edit: the paper broker
    (trading.brokers.paper) alone writes it, as a real broker's database would be written by the broker."""

    client_order_id = models.CharField(max_length=64, unique=True)
    broker_order_id = models.CharField(max_length=64, unique=True)
    asset = models.ForeignKey("holdings.Asset", on_delete=models.PROTECT, related_name="+")
    side = models.CharField(max_length=4, choices=OrderSide.choices)
    quantity = quantity_field()
    order_type = models.CharField(max_length=6, choices=OrderType.choices)
    limit_price = quantity_field(null=True, blank=True)
    state = models.CharField(max_length=16)
    filled_quantity = quantity_field(default=Decimal("0"))
    accepted_at = models.DateTimeField()
    message = models.TextField(blank=True)

    class Meta:
        ordering = ["accepted_at", "id"]

    def __str__(self) -> str:
        return f"Paper order {self.broker_order_id}"


class PaperFill(models.Model):
    order = models.ForeignKey(PaperOrder, on_delete=models.CASCADE, related_name="fills")
    fill_id = models.CharField(max_length=80, unique=True)
    quantity = quantity_field()
    price = quantity_field()
    fees = amount_field(default=Decimal("0"))
    executed_at = models.DateTimeField()

    class Meta:
        ordering = ["executed_at", "id"]

    def __str__(self) -> str:
        return f"Paper fill {self.fill_id}"


# --- Model portfolios ------------------------------------------------------------------------------------------


def percent_field(**kwargs: object) -> models.DecimalField:
    """A percentage, 0 to 100, to four decimal places (a weight of 33.3333%)."""
    return models.DecimalField(max_digits=7, decimal_places=4, **kwargs)  # type: ignore[arg-type]


class ModelPortfolioQuerySet(ReferenceDataQuerySet["ModelPortfolio"]):
    pass


class ModelPortfolio(TimeStampedModel):
    """A firm-wide target for portfolios to follow: a weight per asset and a cash weight summing to 100%, the drift
    band inside which a position is left alone, the smallest trade worth making, and whether units may be
    fractional. Operations manage them; advisors assign them to their clients' portfolios.

    That the weights sum to 100 is a rule across rows (the model and its weights), which a CHECK cannot hold: it is
    `trading.rebalancing.model_portfolio_save`'s, the one write of weights."""

    name = models.CharField(max_length=80, unique=True)
    # The validators repeat the constraints below for the doors: a refusal then names its field (a CHECK's refusal
    # is model-wide), and the database still holds the rule for every other write.
    cash_weight = percent_field(
        default=Decimal("0"),
        validators=[MinValueValidator(Decimal(0)), MaxValueValidator(Decimal(100))],
        help_text="The cash target, in percent of the portfolio.",
    )
    drift_band = percent_field(
        default=Decimal("5"),
        validators=[MinValueValidator(Decimal("0.0001")), MaxValueValidator(Decimal(100))],
        help_text="Percentage points (absolute) a weight may drift from its target before it is traded back.",
    )
    minimum_trade = amount_field(
        default=Decimal("0"),
        help_text="No order worth less than this is proposed (in the portfolio's base currency).",
    )
    fractional = models.BooleanField(
        default=False,
        help_text="Whether orders may be for fractions of a unit (of a lot of one or more units: see README, "
        "'Model portfolios and rebalancing').",
    )
    notes = notes_field()

    objects = ModelPortfolioQuerySet.as_manager()
    history = TrackedHistory(excluded_fields=["updated_at"])

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(name=""),
                name="trading_modelportfolio_name_not_blank",
                violation_error_message="A model portfolio needs a name.",
            ),
            models.CheckConstraint(
                condition=models.Q(cash_weight__gte=0, cash_weight__lte=100),
                name="trading_modelportfolio_cash_weight_percent",
                violation_error_message="The cash weight is a percentage from 0 to 100.",
            ),
            models.CheckConstraint(
                condition=models.Q(drift_band__gt=0, drift_band__lte=100),
                name="trading_modelportfolio_drift_band_range",
                violation_error_message="The drift band is above 0 and at most 100 percentage points.",
            ),
            models.CheckConstraint(
                condition=models.Q(minimum_trade__gte=0),
                name="trading_modelportfolio_minimum_trade_not_negative",
                violation_error_message="The minimum trade cannot be negative.",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class ModelWeight(models.Model):
    """One asset's target weight in a model portfolio, in percent of the portfolio's value."""

    model = models.ForeignKey(ModelPortfolio, on_delete=models.CASCADE, related_name="weights")
    asset = models.ForeignKey("holdings.Asset", on_delete=models.PROTECT, related_name="+")
    weight = percent_field(
        validators=[MinValueValidator(Decimal("0.0001")), MaxValueValidator(Decimal(100))],
        help_text="Percent of the portfolio's value, above 0 and at most 100.",
    )

    objects = ReferenceDataQuerySet.as_manager()
    # What a model's weights were on any day: each replacement of the weights records the old rows' removal and the
    # new rows' creation (`model_portfolio_save`).
    history = TrackedHistory()

    class Meta:
        ordering = ["model", "-weight", "asset_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["model", "asset"],
                name="trading_modelweight_one_per_asset",
                violation_error_message="The model already has a weight for this asset.",
            ),
            models.CheckConstraint(
                condition=models.Q(weight__gt=0, weight__lte=100),
                name="trading_modelweight_weight_percent",
                violation_error_message="A weight is above 0 and at most 100 percent.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.asset}: {self.weight.normalize():f}%"


class ModelAssignmentQuerySet(ClientOwnedQuerySet["ModelAssignment"]):
    client_path = "client"


class ModelAssignment(TimeStampedModel):
    """A portfolio following a model portfolio (at most one each). Its client is its portfolio's client, held to
    agree by the database as on every row hanging off a portfolio."""

    # Checked by one key, not three: the (portfolio, client) foreign key (clients.migration_ops) holds both to exist
    # and to agree, so neither has a constraint of its own.
    client = models.ForeignKey("clients.Client", on_delete=models.PROTECT, related_name="+", db_constraint=False)
    portfolio = models.OneToOneField(
        "clients.Portfolio", on_delete=models.PROTECT, related_name="model_assignment", db_constraint=False
    )
    model = models.ForeignKey(ModelPortfolio, on_delete=models.PROTECT, related_name="assignments")

    objects = ModelAssignmentQuerySet.as_manager()
    history = TrackedHistory(excluded_fields=["updated_at"])

    class Meta:
        ordering = ["portfolio_id"]

    def __str__(self) -> str:
        return f"{self.portfolio} follows {self.model}"

    def clean(self) -> None:
        super().clean()
        if self.portfolio_id is not None and self.client_id is not None and self.portfolio.client_id != self.client_id:
            raise ValidationError({"portfolio": "The portfolio belongs to another client."})


class RebalanceProposalQuerySet(ClientOwnedQuerySet["RebalanceProposal"]):
    client_path = "client"


class RebalanceProposal(models.Model):
    """The orders that would bring a portfolio back to its model, as computed at `created_at` (`proposal`, decimals
    as strings), and `basis`: a fingerprint of everything it was computed from (free units and cash, prices, rates,
    the model). Accepted once: the orders are created as drafts, and only while the basis still holds."""

    # Checked by one key, not three: the (portfolio, client) foreign key (clients.migration_ops) holds both to exist
    # and to agree, so neither has a constraint of its own.
    client = models.ForeignKey("clients.Client", on_delete=models.PROTECT, related_name="+", db_constraint=False)
    portfolio = models.ForeignKey(
        "clients.Portfolio", on_delete=models.PROTECT, related_name="rebalance_proposals", db_constraint=False
    )
    model = models.ForeignKey(ModelPortfolio, on_delete=models.PROTECT, related_name="proposals")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    proposal = models.JSONField(help_text="The proposed orders, weights and warnings (decimals as strings).")
    basis = models.CharField(max_length=64, help_text="SHA-256 of what the proposal was computed from.")
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    orders = models.ManyToManyField(Order, blank=True, related_name="+", help_text="The drafts its acceptance made.")

    objects = RebalanceProposalQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(accepted_at__isnull=True, accepted_by__isnull=True)
                | models.Q(accepted_at__isnull=False),
                name="trading_rebalanceproposal_accepted_by_when_accepted",
                violation_error_message="Only an accepted proposal names who accepted it.",
            ),
            models.CheckConstraint(
                condition=~models.Q(basis=""),
                name="trading_rebalanceproposal_basis_not_blank",
                violation_error_message="A proposal needs the fingerprint of what it was computed from.",
            ),
        ]

    def __str__(self) -> str:
        return f"Rebalance proposal {self.pk} for {self.portfolio}"

    @property
    def is_accepted(self) -> bool:
        return self.accepted_at is not None
