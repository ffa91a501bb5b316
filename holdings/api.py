from decimal import Decimal
from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from clients.api import PortfolioPlacementMixin, VisibleClientField, VisiblePortfolioField
from clients.filters import visible_portfolios
from portfolio_site.api.fields import (
    ActorContextMixin,
    CurrencyField,
    PlainDecimalField,
    must_be_positive,
    must_not_be_negative,
)
from portfolio_site.api.viewsets import ScopedModelViewSet
from portfolio_site.models import NOTES_MAX_LENGTH

from . import services
from .filters import AllocationFilterSet, AssetFilterSet, PriceFilterSet
from .models import Allocation, Asset, Price


class AssetSerializer(serializers.ModelSerializer):
    currency = CurrencyField()

    class Meta:
        model = Asset
        fields = ["id", "ticker", "name", "exchange", "currency", "asset_type", "isin", "created_at", "updated_at"]
        # Uniqueness is the service's full_clean() and the database's, which see the normalised ticker.
        validators: list[Any] = []

    def create(self, validated_data: dict[str, Any]) -> Asset:
        return services.asset_create(**validated_data)

    def update(self, instance: Asset, validated_data: dict[str, Any]) -> Asset:
        return services.asset_update(asset=instance, **validated_data)


class AssetViewSet(ScopedModelViewSet):
    """Securities and other instruments that clients hold: reference data every staff role reads, Operations write.

    An asset that allocations use cannot be deleted or change its currency (409); deleting one deletes its prices.
    """

    queryset = Asset.objects.all()
    serializer_class = AssetSerializer
    filterset_class = AssetFilterSet
    ordering_fields = ["ticker", "name", "exchange", "created_at"]
    ordering = ["ticker", "exchange"]
    cache_namespace = services.ASSETS_CACHE

    def perform_destroy(self, instance: Asset) -> None:
        services.asset_delete(asset=instance)


class PriceSerializer(serializers.ModelSerializer):
    close = PlainDecimalField(max_digits=30, decimal_places=10, validators=[must_not_be_negative])
    currency = serializers.CharField(source="asset.currency", read_only=True)

    class Meta:
        model = Price
        fields = ["id", "asset", "date", "close", "currency", "created_at", "updated_at"]
        validators: list[Any] = []

    def create(self, validated_data: dict[str, Any]) -> Price:
        return services.price_create(**validated_data)

    def update(self, instance: Price, validated_data: dict[str, Any]) -> Price:
        return services.price_update(price=instance, **validated_data)


class PriceViewSet(ScopedModelViewSet):
    """Closing prices of assets, one per asset and date, in the asset's currency."""

    queryset = Price.objects.select_related("asset")
    serializer_class = PriceSerializer
    filterset_class = PriceFilterSet
    ordering_fields = ["date", "close", "created_at"]
    ordering = ["asset_id", "-date"]
    cache_namespace = services.PRICES_CACHE

    def perform_destroy(self, instance: Price) -> None:
        services.price_delete(price=instance)


class AllocationSerializer(ActorContextMixin, PortfolioPlacementMixin, serializers.ModelSerializer):
    portfolio = VisiblePortfolioField(required=False, help_text="Id of the portfolio the units move in.")
    client = VisibleClientField(
        required=False,
        help_text="Id of the client, instead of `portfolio` when the client has a single portfolio; if both are "
        "given they must agree.",
    )
    quantity = PlainDecimalField(max_digits=30, decimal_places=10, validators=[must_be_positive])
    price = PlainDecimalField(
        max_digits=30,
        decimal_places=10,
        validators=[must_not_be_negative],
        help_text="Per unit, in the asset's currency.",
    )
    fees = PlainDecimalField(
        max_digits=20, decimal_places=4, validators=[must_not_be_negative], required=False, default=Decimal("0")
    )
    currency = serializers.CharField(source="asset.currency", read_only=True)

    class Meta:
        model = Allocation
        fields = [
            "id",
            "client",
            "portfolio",
            "asset",
            "kind",
            "quantity",
            "price",
            "fees",
            "currency",
            "date",
            "notes",
            "settlement",
            "counterpart",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["settlement", "counterpart"]

    def create(self, validated_data: dict[str, Any]) -> Allocation:
        return services.allocation_create(actor=self.actor, **validated_data)

    def update(self, instance: Allocation, validated_data: dict[str, Any]) -> Allocation:
        return services.allocation_update(actor=self.actor, allocation=instance, **validated_data)


class AllocationViewSet(ScopedModelViewSet):
    """Movements of the holdings of clients' portfolios. A buy or sell posts its cash settlement in the same
    portfolio's ledger; changing or deleting one reverses that settlement (and posts a new one). Refused with 409
    when the portfolio's cash or units fall short or it is closed. Deleting either leg of a transfer between
    portfolios deletes both; changing one is refused (409).
    """

    queryset = Allocation.objects.select_related("asset")
    serializer_class = AllocationSerializer
    filterset_class = AllocationFilterSet
    ordering_fields = ["date", "quantity", "created_at", "id"]
    ordering = ["-date", "-id"]

    def perform_destroy(self, instance: Allocation) -> None:
        services.allocation_delete(actor=self.request.user, allocation=instance)


class UnitsTransferSerializer(serializers.Serializer):
    to_portfolio = VisiblePortfolioField(help_text="Id of another portfolio of the same client.")
    asset = serializers.PrimaryKeyRelatedField(queryset=Asset.objects.all())
    quantity = PlainDecimalField(max_digits=30, decimal_places=10, validators=[must_be_positive])
    date = serializers.DateField(help_text="Date of both legs.")
    price = PlainDecimalField(
        max_digits=30,
        decimal_places=10,
        validators=[must_not_be_negative],
        required=False,
        default=Decimal("0"),
        help_text="Value per unit recorded on both legs (e.g. the cost carried over), in the asset's currency.",
    )
    notes = serializers.CharField(required=False, allow_blank=True, default="", max_length=NOTES_MAX_LENGTH)


class UnitsTransferResultSerializer(serializers.Serializer):
    outgoing = AllocationSerializer(help_text="The transfer out of this portfolio.")
    incoming = AllocationSerializer(
        help_text="The transfer into the other portfolio; its `counterpart` is the outgoing leg."
    )


class UnitsTransferView(GenericAPIView):
    """Moves units of an asset from this portfolio to another portfolio of the same client: both legs,
    recorded together, no cash changing hands."""

    queryset = Allocation.objects.all()  # for the permission check: a transfer needs add_allocation
    serializer_class = UnitsTransferSerializer

    @extend_schema(
        parameters=[OpenApiParameter("id", int, OpenApiParameter.PATH, description="The portfolio's id.")],
        request=UnitsTransferSerializer,
        responses={201: UnitsTransferResultSerializer},
        description="Records a transfer out of this portfolio and a transfer into `to_portfolio` (201). 400 if "
        "the portfolios are the same or belong to different clients; 409 if this portfolio does not hold the "
        "units or either portfolio is closed. Deleting either leg (`DELETE /allocations/{id}/`) deletes both.",
    )
    def post(self, request: Request, pk: int) -> Response:
        source = get_object_or_404(visible_portfolios(request), pk=pk)
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        out, into = services.units_transfer(
            actor=request.user, from_portfolio=source, to_portfolio=data.pop("to_portfolio"), **data
        )
        result = UnitsTransferResultSerializer(
            {"outgoing": out, "incoming": into}, context=self.get_serializer_context()
        )
        return Response(result.data, status=status.HTTP_201_CREATED)
