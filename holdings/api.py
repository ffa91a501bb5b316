from decimal import Decimal
from typing import Any

from rest_framework import serializers

from clients.api import VisibleClientField
from portfolio_site.api.fields import (
    ActorContextMixin,
    CurrencyField,
    PlainDecimalField,
    must_be_positive,
    must_not_be_negative,
)
from portfolio_site.api.viewsets import ScopedModelViewSet

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


class AllocationSerializer(ActorContextMixin, serializers.ModelSerializer):
    client = VisibleClientField()
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
            "asset",
            "kind",
            "quantity",
            "price",
            "fees",
            "currency",
            "date",
            "notes",
            "settlement",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["settlement"]

    def create(self, validated_data: dict[str, Any]) -> Allocation:
        return services.allocation_create(actor=self.actor, **validated_data)

    def update(self, instance: Allocation, validated_data: dict[str, Any]) -> Allocation:
        return services.allocation_update(actor=self.actor, allocation=instance, **validated_data)


class AllocationViewSet(ScopedModelViewSet):
    """Movements of clients' holdings. A buy or sell posts its cash settlement in the ledger; changing or
    deleting one reverses that settlement (and posts a new one). Refused with 409 when cash or units fall short.
    """

    queryset = Allocation.objects.select_related("asset")
    serializer_class = AllocationSerializer
    filterset_class = AllocationFilterSet
    ordering_fields = ["date", "quantity", "created_at", "id"]
    ordering = ["-date", "-id"]

    def perform_destroy(self, instance: Allocation) -> None:
        services.allocation_delete(actor=self.request.user, allocation=instance)
