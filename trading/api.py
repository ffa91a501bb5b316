"""Orders and fills: the API's door onto the trading services.

An order is created as a draft (or created and submitted at once), submitted, and cancelled through
`trading.services`; it is never edited or deleted. Fills are the broker's, recorded by the jobs: read only here.
"""

from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Prefetch, QuerySet
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from clients.api import VisiblePortfolioField
from holdings.models import Asset
from portfolio_site.api.fields import ActorContextMixin, PlainDecimalField, must_be_positive
from portfolio_site.api.permissions import ModelPermissions
from portfolio_site.api.schema import ErrorDetailSerializer
from portfolio_site.api.viewsets import ScopedReadCreateViewSet, ScopedViewSetMixin
from portfolio_site.idempotency.api import idempotent
from portfolio_site.models import NOTES_MAX_LENGTH
from portfolio_site.money import AMOUNT_DIGITS, AMOUNT_PLACES, QUANTITY_DIGITS, QUANTITY_PLACES

from . import services
from .brokers import BrokerUnavailable, broker_names
from .filters import FillFilterSet, OrderFilterSet
from .models import Fill, Order, OrderEvent


class BrokerUnreachable(exceptions.APIException):
    """The order's broker did not answer: nothing changed here, the order stays as it was; try again later."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The broker cannot be reached: the order stays open. Try again later."
    default_code = "broker_unavailable"


BROKER_UNREACHABLE_SECONDS = 30


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
            "broker",
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
    broker = serializers.ChoiceField(
        choices=[],
        required=False,
        help_text="A broker of TRADING_BROKERS; TRADING_DEFAULT_BROKER when absent.",
    )
    notes = serializers.CharField(required=False, allow_blank=True, default="", max_length=NOTES_MAX_LENGTH)
    submit = serializers.BooleanField(
        required=False,
        default=False,
        help_text="true: create and submit in one request (needs the permission to submit orders as well); the "
        "draft is not kept when the submission is refused.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The settings' brokers as they are now (tests and deployments name their own).
        broker = self.fields["broker"]
        assert isinstance(broker, serializers.ChoiceField)
        broker.choices = broker_names()
        broker.default = settings.TRADING_DEFAULT_BROKER


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

    queryset = Order.objects.all()
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
        "market order or none on a limit order, an unknown asset or broker, or a portfolio the caller may not see; "
        "409 for a closed portfolio, or, when submitting, an order the portfolio's available cash or units cannot "
        "cover (the detail names what is missing; nothing is created). With an `Idempotency-Key`, sending the same "
        "request again answers as the first time and creates nothing.",
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

    def handle_exception(self, exc: Exception) -> Response:
        response = super().handle_exception(exc)
        if isinstance(exc, BrokerUnreachable):
            response["Retry-After"] = str(BROKER_UNREACHABLE_SECONDS)
        return response


class FillViewSet(ScopedViewSetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Units of orders executed at their brokers, each recorded as an allocation (a buy or a sell that settles in
    cash through the ledger). Read-only: fills come from the brokers. `exceeded_hold` flags a fill that cost more than
    its order held and the portfolio had available (its `shortfall` says what), for staff to resolve."""

    queryset = Fill.objects.select_related("order")
    serializer_class = FillSerializer
    filterset_class = FillFilterSet
    ordering_fields = ["executed_at", "quantity", "price", "id"]
    ordering = ["-executed_at", "-id"]
