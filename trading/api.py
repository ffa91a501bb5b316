"""Orders and fills: the API's door onto the trading services.

An order is created as a draft (or created and submitted at once), submitted, and cancelled through
`trading.services`; it is never edited or deleted. Fills are the broker's, recorded by the jobs: read only here.
"""

from typing import Any

from django.db import transaction
from django.db.models import Prefetch, QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from clients.api import VisiblePortfolioField
from holdings.models import Asset
from portfolio_site.api.exceptions import Unavailable
from portfolio_site.api.fields import ActorContextMixin, PlainDecimalField, must_be_positive
from portfolio_site.api.permissions import ModelPermissions
from portfolio_site.api.schema import ErrorDetailSerializer
from portfolio_site.api.viewsets import ScopedModelViewSet, ScopedReadCreateViewSet, ScopedViewSetMixin
from portfolio_site.idempotency.api import idempotent
from portfolio_site.models import NOTES_MAX_LENGTH
from portfolio_site.money import AMOUNT_DIGITS, AMOUNT_PLACES, QUANTITY_DIGITS, QUANTITY_PLACES

from . import services
from .brokers import BrokerUnavailable
from .connections import broker_account_save, connection_check, connection_save, may_read_checks
from .filters import BrokerAccountFilterSet, FillFilterSet, OrderFilterSet
from .models import BrokerAccount, BrokerConnection, Fill, Order, OrderEvent

BROKER_UNREACHABLE_SECONDS = 30


class BrokerUnreachable(Unavailable):
    """The order's broker did not answer: nothing changed here, the order stays as it was; try again later."""

    default_detail = "The broker cannot be reached: the order stays open. Try again later."
    default_code = "broker_unavailable"
    wait = BROKER_UNREACHABLE_SECONDS


def _quantity(**kwargs: Any) -> PlainDecimalField:
    return PlainDecimalField(max_digits=QUANTITY_DIGITS, decimal_places=QUANTITY_PLACES, **kwargs)


def _amount(**kwargs: Any) -> PlainDecimalField:
    return PlainDecimalField(max_digits=AMOUNT_DIGITS, decimal_places=AMOUNT_PLACES, **kwargs)


class OrderEventSerializer(serializers.ModelSerializer):
    # By id, as every record names its author (a transaction's `created_by`): who else works here is for those who
    # see every client to learn (`/users/`), not for an advisor reading an order an operations desk cancelled.
    actor = serializers.IntegerField(
        source="actor_id",
        read_only=True,
        allow_null=True,
        help_text="Who acted (a user id); null when the broker or a job did.",
    )
    from_status = serializers.CharField(read_only=True, help_text="The status before (empty for the order's creation).")

    class Meta:
        model = OrderEvent
        fields = ["id", "at", "actor", "from_status", "to_status", "message"]
        read_only_fields = fields


class FillSerializer(serializers.ModelSerializer):
    portfolio = serializers.IntegerField(source="order.portfolio_id", read_only=True)
    asset = serializers.IntegerField(source="order.asset_id", read_only=True)
    quantity = _quantity(read_only=True)
    price = _quantity(read_only=True, help_text="Per unit, in the asset's currency.")
    fees = _amount(read_only=True, help_text="In the asset's currency.")
    taxes = _amount(read_only=True, help_text="In the asset's currency.")
    allocation = serializers.IntegerField(
        source="allocation_id", read_only=True, help_text="The allocation (a buy or sell) that records the fill."
    )

    class Meta:
        model = Fill
        fields = [
            "id",
            "order",
            "client",
            "portfolio",
            "asset",
            "quantity",
            "price",
            "fees",
            "taxes",
            "executed_at",
            "broker_fill_id",
            "allocation",
            "exceeded_hold",
            "shortfall",
            "created_at",
        ]
        read_only_fields = fields


class OrderSerializer(serializers.ModelSerializer):
    quantity = _quantity(read_only=True)
    limit_price = _quantity(read_only=True, allow_null=True, help_text="Per unit, in the asset's currency.")
    filled_quantity = _quantity(read_only=True)
    remaining_quantity = _quantity(read_only=True, help_text="Units not filled yet.")
    hold_price = _quantity(
        read_only=True,
        allow_null=True,
        help_text="The price per unit a buy's cash hold was sized at when submitted (its limit, or the latest price "
        "plus TRADING_MARKET_ORDER_BUFFER); null before submission and for a sell.",
    )
    placed_by = serializers.IntegerField(
        source="placed_by_id", read_only=True, allow_null=True, help_text="The user id of who created the order."
    )
    broker = serializers.CharField(
        source="connection.name", read_only=True, help_text="The name of the broker connection it is placed through."
    )

    class Meta:
        model = Order
        fields = [
            "id",
            "client",
            "portfolio",
            "asset",
            "side",
            "quantity",
            "order_type",
            "limit_price",
            "time_in_force",
            "status",
            "filled_quantity",
            "remaining_quantity",
            "hold_price",
            "connection",
            "broker",
            "account_id",
            "client_order_id",
            "broker_order_id",
            "broker_message",
            "notes",
            "placed_by",
            "submitted_at",
            "expires_at",
            "closed_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class OrderDetailSerializer(OrderSerializer):
    events = OrderEventSerializer(many=True, read_only=True, help_text="The audit trail, oldest first.")
    fills = FillSerializer(many=True, read_only=True, help_text="Its fills, latest first.")

    class Meta(OrderSerializer.Meta):
        fields = [*OrderSerializer.Meta.fields, "events", "fills"]
        read_only_fields = fields


class OrderCreateSerializer(ActorContextMixin, serializers.Serializer):
    portfolio = VisiblePortfolioField(help_text="Id of the portfolio the order trades for.")
    asset = serializers.PrimaryKeyRelatedField(queryset=Asset.objects.all())
    side = serializers.ChoiceField(choices=Order.Side.choices)
    quantity = _quantity(validators=[must_be_positive], help_text="Units to buy or sell.")
    order_type = serializers.ChoiceField(choices=Order.Type.choices, required=False, default=Order.Type.MARKET)
    limit_price = _quantity(
        required=False,
        allow_null=True,
        default=None,
        validators=[must_be_positive],
        help_text="Required for a limit order (the highest price a buy pays, the lowest a sell accepts, per unit in "
        "the asset's currency); none for a market order.",
    )
    time_in_force = serializers.ChoiceField(
        choices=Order.TimeInForce.choices,
        required=False,
        default=Order.TimeInForce.DAY,
        help_text="day: expires at the end of the day in TRADING_TIMEZONE; gtc: good till cancelled.",
    )
    connection = serializers.PrimaryKeyRelatedField(
        queryset=BrokerConnection.objects.all(),
        required=False,
        allow_null=True,
        default=None,
        help_text="Id of the broker connection to place it through (GET /api/v1/broker-connections/): an active one "
        "where the portfolio has an account. When absent, the portfolio's only such account.",
    )
    notes = serializers.CharField(required=False, allow_blank=True, default="", max_length=NOTES_MAX_LENGTH)
    submit = serializers.BooleanField(
        required=False,
        default=False,
        help_text="true: create and submit in one request (needs the permission to submit orders as well); the "
        "draft is not kept when the submission is refused.",
    )


class OrderPermissions(ModelPermissions):
    """The model's permissions (view to read, add to create), and the trading permission each action needs: submit
    (`trading.submit_order`), cancel (`trading.cancel_order`)."""

    ACTION_PERMS = {
        "submit": ["trading.view_order", "trading.submit_order"],
        "cancel": ["trading.view_order", "trading.cancel_order"],
    }

    def has_permission(self, request, view) -> bool:  # type: ignore[no-untyped-def]
        needed = self.ACTION_PERMS.get(getattr(view, "action", None) or "")
        if needed is not None:
            return bool(request.user and request.user.is_authenticated and request.user.has_perms(needed))
        return super().has_permission(request, view)


def with_history(orders: QuerySet[Order]) -> QuerySet[Order]:
    """Orders with their audit trail (and who acted) and their fills, in two queries for any number of orders."""
    lookups: list[Any] = [
        Prefetch("events", queryset=OrderEvent.objects.order_by("at", "id")),
        Prefetch("fills", queryset=Fill.objects.order_by("-executed_at", "-id")),
    ]
    return orders.prefetch_related(*lookups)


NOT_COVERED = OpenApiResponse(
    ErrorDetailSerializer,
    description="The portfolio is closed, or (when submitting) its available cash or units cannot cover the order: "
    "the detail names what is missing.",
)
NOT_SUBMITTED = OpenApiResponse(
    ErrorDetailSerializer,
    description="The order is not a draft, or the portfolio's available cash or units cannot cover it: the detail "
    "names what is missing.",
)
NOT_CANCELLED = OpenApiResponse(
    ErrorDetailSerializer,
    description="The order has ended (filled, cancelled, rejected, expired), or the broker refused the cancel or "
    "filled it first.",
)
BROKER_DOWN = OpenApiResponse(
    ErrorDetailSerializer,
    description="The order's broker cannot be reached (`Retry-After` says when to try again): nothing changed, the "
    "order stays open.",
)


class OrderViewSet(ScopedReadCreateViewSet):
    """Orders to buy or sell an asset for a portfolio, placed with a broker. Created as a draft (or created and
    submitted in one request), submitted (placing a hold on the portfolio's cash or units), sent to the broker and
    filled there by jobs; cancelled, never edited or deleted. A retrieved order carries its audit trail (`events`)
    and its `fills`."""

    queryset = Order.objects.select_related("connection")
    serializer_class = OrderSerializer
    filterset_class = OrderFilterSet
    permission_classes = [OrderPermissions]
    ordering_fields = ["created_at", "submitted_at", "quantity", "id"]
    ordering = ["-created_at", "-id"]

    def get_queryset(self) -> QuerySet[Order]:
        queryset = super().get_queryset()
        return with_history(queryset) if self.action == "retrieve" else queryset

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        if self.action == "create":
            return OrderCreateSerializer
        return OrderSerializer if self.action == "list" else OrderDetailSerializer

    def _output(self, order: Order, status_code: int = status.HTTP_200_OK) -> Response:
        fresh = with_history(self.get_queryset()).get(pk=order.pk)
        return Response(OrderDetailSerializer(fresh, context=self.get_serializer_context()).data, status=status_code)

    @extend_schema(
        request=OrderCreateSerializer,
        responses={201: OrderDetailSerializer, 409: NOT_COVERED},
        description="Creates a draft order (201), or with `submit: true` creates and submits it in one go (needs "
        "`trading.submit_order` too: 403 without). 400 naming the field for a bad quantity, a limit price on a "
        "market order or none on a limit order, an unknown asset, a portfolio the caller may not see, or a "
        "`connection` that is inactive, where the portfolio has no account, or left out when the portfolio has "
        "accounts at several; 409 for a closed portfolio, or, when submitting, an order the portfolio's available "
        "cash or units cannot cover (the detail names what is missing; nothing is created). With an "
        "`Idempotency-Key`, sending the same request again answers as the first time and creates nothing.",
    )
    @idempotent
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        submit = data.pop("submit")
        if submit and not request.user.has_perm("trading.submit_order"):
            raise exceptions.PermissionDenied("Submitting an order needs the permission to submit orders.")
        with transaction.atomic():
            order = services.order_create(actor=request.user, **data)
            if submit:
                order = services.order_submit(actor=request.user, order=order)
        return self._output(order, status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: OrderDetailSerializer, 409: NOT_SUBMITTED})
    @action(detail=True, methods=["post"], filter_backends=[])
    def submit(self, request: Request, pk: str | None = None) -> Response:
        """Submits a draft: holds the cash a buy needs (quantity x its limit, or the latest price plus the market
        buffer, plus estimated fees) or the units a sell needs, then a job sends it to its broker (status `pending`
        until the broker acknowledges it). 409 when it is not a draft, or when the portfolio's available cash or units
        cannot cover it (the detail names what is missing). Needs `trading.submit_order`."""
        order = services.order_submit(actor=request.user, order=self.get_object())
        return self._output(order)

    @extend_schema(
        request=None,
        responses={200: OrderDetailSerializer, 409: NOT_CANCELLED, 503: BROKER_DOWN},
    )
    @action(detail=True, methods=["post"], filter_backends=[])
    def cancel(self, request: Request, pk: str | None = None) -> Response:
        """Cancels an order: a draft, or one not yet at its broker, at once; an open one at its broker first, then
        here, releasing what it still held. 409 when it has ended (filled, cancelled, rejected, expired), or when the
        broker refuses or it fills first (its fills are recorded all the same); 503 when the broker cannot be
        reached (the order stays open: try again). Needs `trading.cancel_order`."""
        try:
            order = services.order_cancel(actor=request.user, order=self.get_object())
        except BrokerUnavailable as error:
            raise BrokerUnreachable(
                f"The broker cannot be reached ({error}): the order stays open. Try again later."
            ) from None
        return self._output(order)


class FillViewSet(ScopedViewSetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Units of orders executed at their brokers, each recorded as an allocation (a buy or a sell that settles in
    cash through the ledger). Read-only: fills come from the brokers. `exceeded_hold` flags a fill that cost more than
    its order held and the portfolio had available (its `shortfall` says what), for staff to resolve."""

    queryset = Fill.objects.select_related("order")
    serializer_class = FillSerializer
    filterset_class = FillFilterSet
    ordering_fields = ["executed_at", "quantity", "price", "id"]
    ordering = ["-executed_at", "-id"]


# --- Broker connections and accounts -------------------------------------------------------------------------


class _Secret(serializers.CharField):
    """A credential: taken, never shown (write-only), its input masked in the browsable API."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(write_only=True, required=False, max_length=500, style={"input_type": "password"}, **kwargs)


class BrokerConnectionSerializer(serializers.ModelSerializer):
    api_key = _Secret(
        help_text="Write-only: never shown again (`credentials_set_at` says when it was set). Give it with "
        "`api_secret` to set or replace the credentials; leave both out to keep them."
    )
    api_secret = _Secret(help_text="Write-only, like `api_key`, and given with it.")
    kind = serializers.ChoiceField(
        choices=BrokerConnection.Kind.choices, help_text="Set when the connection is created; it cannot change."
    )

    class Meta:
        model = BrokerConnection
        fields = [
            "id",
            "name",
            "kind",
            "environment",
            "base_url",
            "is_active",
            "api_key",
            "api_secret",
            "credentials_set_at",
            "last_checked_at",
            "last_check_ok",
            "last_check_message",
            "created_at",
            "updated_at",
        ]
        extra_kwargs = {
            "last_check_message": {
                "help_text": "What the last check answered; empty for those who may not test connections."
            }
        }
        read_only_fields = [
            "credentials_set_at",
            "last_checked_at",
            "last_check_ok",
            "last_check_message",
            "created_at",
            "updated_at",
        ]

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        self._credentials = {"api_key": attrs.pop("api_key", None), "api_secret": attrs.pop("api_secret", None)}
        return attrs

    def get_initial(self) -> Any:
        # What the browsable API refills its form with after a refusal: never the credentials just sent.
        initial = super().get_initial()
        for name in ("api_key", "api_secret"):
            initial.pop(name, None)
        return initial

    def to_representation(self, instance: BrokerConnection) -> dict[str, Any]:
        data: dict[str, Any] = super().to_representation(instance)
        request = self.context.get("request")
        if request is None or not may_read_checks(request.user):
            data["last_check_message"] = ""
        return data

    def create(self, validated_data: dict[str, Any]) -> BrokerConnection:
        return connection_save(connection=BrokerConnection(**validated_data), **self._credentials)

    def update(self, instance: BrokerConnection, validated_data: dict[str, Any]) -> BrokerConnection:
        for name, value in validated_data.items():
            setattr(instance, name, value)
        return connection_save(connection=instance, **self._credentials)


class ConnectionCheckSerializer(serializers.Serializer):
    ok = serializers.BooleanField(help_text="Whether the broker accepted the credentials and answered.")
    message = serializers.CharField(help_text="The broker's account as it answered, or why the check failed.")
    checked_at = serializers.DateTimeField()


class BrokerConnectionPermissions(ModelPermissions):
    """The model's permissions (advisors view the connections to choose among them; Operations manage them), and
    `trading.check_brokerconnection` to test one."""

    def has_permission(self, request, view) -> bool:  # type: ignore[no-untyped-def]
        if getattr(view, "action", None) == "check":
            return bool(
                request.user
                and request.user.is_authenticated
                and request.user.has_perms(["trading.view_brokerconnection", "trading.check_brokerconnection"])
            )
        return super().has_permission(request, view)


class BrokerConnectionViewSet(ScopedModelViewSet):
    """Firm-wide connections to brokers, which orders are placed through: read by every role that trades or audits,
    managed by superusers and Operations. The API key and secret are write-only: set with the connection, replaced
    by giving both again, never shown (`credentials_set_at` says when they were set). DELETE only a connection no
    order or account uses (409: deactivate it instead)."""

    queryset = BrokerConnection.objects.all()
    serializer_class = BrokerConnectionSerializer
    permission_classes = [BrokerConnectionPermissions]
    filterset_fields = ["kind", "environment", "is_active"]
    ordering_fields = ["name", "created_at"]
    ordering = ["name"]

    @extend_schema(
        request=None,
        responses={200: ConnectionCheckSerializer},
        description="Tests the connection without placing an order: the broker is asked for its account. 200 with "
        "`ok` false when the broker refuses the credentials or does not answer (the message says which). Needs "
        "`trading.check_brokerconnection`.",
    )
    @action(detail=True, methods=["post"], filter_backends=[])
    def check(self, request: Request, pk: str | None = None) -> Response:
        connection = self.get_object()
        result = connection_check(connection=connection)
        connection.refresh_from_db(fields=["last_checked_at"])
        return Response(
            ConnectionCheckSerializer(
                {"ok": result.ok, "message": result.message, "checked_at": connection.last_checked_at}
            ).data
        )


class BrokerAccountSerializer(serializers.ModelSerializer):
    portfolio = VisiblePortfolioField(help_text="Id of the portfolio whose account it is.")
    connection = serializers.PrimaryKeyRelatedField(queryset=BrokerConnection.objects.all())

    class Meta:
        model = BrokerAccount
        fields = ["id", "connection", "client", "portfolio", "account_id", "created_at", "updated_at"]
        read_only_fields = ["client", "created_at", "updated_at"]
        # The one-account-per-portfolio rule is the database's, reported by full_clean on `connection`.
        validators: list[Any] = []

    def create(self, validated_data: dict[str, Any]) -> BrokerAccount:
        return broker_account_save(account=BrokerAccount(**validated_data))

    def update(self, instance: BrokerAccount, validated_data: dict[str, Any]) -> BrokerAccount:
        for name, value in validated_data.items():
            setattr(instance, name, value)
        return broker_account_save(account=instance)


class BrokerAccountViewSet(ScopedModelViewSet):
    """Portfolios' accounts at broker connections (their custodian accounts there): an order goes through a
    connection where its portfolio has an account, and names that account. Scoped like every client's row; managed
    by superusers and Operations, read by advisors and auditors. An order keeps the account id it was placed with, so
    changing or deleting an account never rewrites an order."""

    queryset = BrokerAccount.objects.select_related("connection")
    serializer_class = BrokerAccountSerializer
    filterset_class = BrokerAccountFilterSet
    ordering_fields = ["account_id", "created_at"]
    ordering = ["connection__name", "account_id", "id"]
