from decimal import Decimal
from typing import Any

from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import NotFound, PermissionDenied
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
from portfolio_site.api.lean import LeanListSerializer
from portfolio_site.api.pagination import LargeListPagination
from portfolio_site.api.schema import VALIDATION_ERROR, ErrorDetailSerializer
from portfolio_site.api.viewsets import LeanListMixin, ScopedModelViewSet
from portfolio_site.idempotency.api import IdempotentCreateMixin
from portfolio_site.models import NOTES_MAX_LENGTH
from portfolio_site.scoping import scoped

from . import dividends as dividend_services
from . import services
from .filters import (
    AllocationFilterSet,
    AssetFilterSet,
    DividendFilterSet,
    FxRateFilterSet,
    PriceFilterSet,
    SplitFilterSet,
)
from .fx import MissingRate, fx_rate
from .models import Allocation, Asset, AssetSymbol, Dividend, FxRate, Price, Split
from .selectors import asset_holders, latest_prices


class AssetSymbolSerializer(serializers.ModelSerializer):
    class Meta:
        model = AssetSymbol
        fields = ["source", "symbol"]


class AssetSerializer(serializers.ModelSerializer):
    currency = CurrencyField()
    lot_size = PlainDecimalField(
        max_digits=30,
        decimal_places=10,
        required=False,
        validators=[must_be_positive],
        help_text="The units it trades in (1 when not given): rebalancing proposals round quantities down to whole "
        "lots.",
    )
    symbols = AssetSymbolSerializer(
        many=True,
        read_only=True,
        help_text="The asset's symbol at each market data source (maintained in the admin, on the asset).",
    )

    class Meta:
        model = Asset
        fields = [
            "id",
            "ticker",
            "name",
            "exchange",
            "currency",
            "asset_type",
            "isin",
            "lot_size",
            "description",
            "symbols",
            "created_at",
            "updated_at",
        ]
        # Uniqueness is the service's full_clean() and the database's, which see the normalised ticker.
        validators: list[Any] = []

    def create(self, validated_data: dict[str, Any]) -> Asset:
        return services.asset_create(**validated_data)

    def update(self, instance: Asset, validated_data: dict[str, Any]) -> Asset:
        return services.asset_update(asset=instance, **validated_data)


class HolderSerializer(serializers.Serializer):
    portfolio = serializers.IntegerField()
    portfolio_name = serializers.CharField()
    client = serializers.IntegerField()
    client_name = serializers.CharField()
    quantity = PlainDecimalField(max_digits=30, decimal_places=10, help_text="Units held at the end of the day.")


class AsOfQuerySerializer(serializers.Serializer):
    as_of = serializers.DateField(required=False, help_text="The end of this day; today when absent.")


HOLDERS_AS_OF = OpenApiParameter(
    "as_of", OpenApiTypes.DATE, description="Positions at the end of this day (by trade date); today when absent."
)


class AssetViewSet(ScopedModelViewSet):
    """Securities and other instruments that clients hold: reference data every staff role reads, Operations write.

    An asset that allocations use cannot be deleted or change its currency (409); deleting one deletes its prices.
    """

    queryset = Asset.objects.prefetch_related("symbols")
    serializer_class = AssetSerializer
    filterset_class = AssetFilterSet
    ordering_fields = ["ticker", "name", "exchange", "created_at"]
    ordering = ["ticker", "exchange"]
    cache_namespace = services.ASSETS_CACHE

    def perform_destroy(self, instance: Asset) -> None:
        services.asset_delete(asset=instance)

    @extend_schema(
        parameters=[HOLDERS_AS_OF],
        responses=HolderSerializer(many=True),
        description="The portfolios the caller may see that hold units of this asset (quantity > 0) at the end "
        "of `as_of`, with their client; ordered by client name, then portfolio name. Needs `view_allocation` "
        "as well (403 without).",
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def holders(self, request: Request, pk: str) -> Response:
        asset = self.get_object()
        if not request.user.has_perm("holdings.view_allocation"):
            raise PermissionDenied("Reading who holds an asset needs the permission to view allocations.")
        query = AsOfQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        on = query.validated_data.get("as_of") or timezone.localdate()
        # Scoped first, as every door does: an advisor's answer holds their own clients' portfolios only.
        allocations = scoped(Allocation.objects.all(), request.user)
        holders = asset_holders(allocations=allocations, asset_id=asset.pk, as_of=on)
        page = self.paginate_queryset(holders)  # type: ignore[arg-type]
        data = HolderSerializer(page if page is not None else holders, many=True).data
        return self.get_paginated_response(data) if page is not None else Response(data)


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


MAX_LATEST_ASSETS = 200


class LatestPriceSerializer(serializers.Serializer):
    asset = serializers.IntegerField(source="pk")
    ticker = serializers.CharField()
    exchange = serializers.CharField()
    currency = serializers.CharField()
    date = serializers.DateField(source="price_date", allow_null=True, help_text="The day of the latest close.")
    close = PlainDecimalField(
        source="price_close", max_digits=30, decimal_places=10, allow_null=True, help_text="In the asset's currency."
    )


class LatestPricesQuerySerializer(serializers.Serializer):
    as_of = serializers.DateField(required=False, help_text="The latest close on or before this day; ever when absent.")


LATEST_ASSETS = OpenApiParameter(
    "asset",
    int,
    many=True,
    required=True,
    description="Asset id; repeat it (`asset=1&asset=2`) or separate ids with commas (`asset=1,2`).",
)
LATEST_AS_OF = OpenApiParameter(
    "as_of", OpenApiTypes.DATE, description="The latest close on or before this day; the latest ever when absent."
)


def _asset_ids(values: list[str]) -> set[int]:
    """The ids of `?asset=1&asset=2` or `?asset=1,2`; 400 naming `asset` for none, a malformed one or too many."""
    parts = [part.strip() for value in values for part in value.split(",") if part.strip()]
    if not parts:
        raise serializers.ValidationError({"asset": ["Name at least one asset id."]})
    if bad := [part for part in parts if not (part.isascii() and part.isdigit())]:
        raise serializers.ValidationError({"asset": [f"{bad[0]!r} is not an asset id."]})
    ids = {int(part) for part in parts}
    if len(ids) > MAX_LATEST_ASSETS:
        raise serializers.ValidationError({"asset": [f"Name at most {MAX_LATEST_ASSETS} assets."]})
    return ids


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

    @extend_schema(
        parameters=[LATEST_ASSETS, LATEST_AS_OF],
        responses=LatestPriceSerializer(many=True),
        description=f"The latest close of each asset named (up to {MAX_LATEST_ASSETS}), with its date; `date` and "
        "`close` are null for an asset without a price by then. One entry per asset, by id. 400 naming `asset` "
        "for a missing, malformed or unknown id.",
    )
    @action(detail=False, methods=["get"], filter_backends=[], pagination_class=None)
    def latest(self, request: Request) -> Response:
        query = LatestPricesQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        wanted = _asset_ids(request.query_params.getlist("asset"))
        rows = latest_prices(asset_ids=wanted, as_of=query.validated_data.get("as_of"))
        unknown = sorted(wanted - {row["pk"] for row in rows})
        if unknown:
            raise serializers.ValidationError({"asset": [f"No asset with id {pk}." for pk in unknown]})
        return Response(LatestPriceSerializer(rows, many=True).data)


class FxRateSerializer(serializers.ModelSerializer):
    base = CurrencyField(help_text="ISO 4217 code of the currency one unit of which the rate prices.")
    quote = CurrencyField(help_text="ISO 4217 code of the currency the rate is expressed in.")
    rate = PlainDecimalField(
        max_digits=30,
        decimal_places=10,
        validators=[must_be_positive],
        help_text="Units of quote for one unit of base; greater than zero.",
    )

    class Meta:
        model = FxRate
        fields = ["id", "base", "quote", "date", "rate", "created_at", "updated_at"]
        # Uniqueness (and base != quote) are the service's full_clean() and the database's.
        validators: list[Any] = []

    def create(self, validated_data: dict[str, Any]) -> FxRate:
        return services.fx_rate_create(**validated_data)

    def update(self, instance: FxRate, validated_data: dict[str, Any]) -> FxRate:
        return services.fx_rate_update(fx_rate=instance, **validated_data)


class SplitSerializer(ActorContextMixin, serializers.ModelSerializer):
    new_units = PlainDecimalField(
        max_digits=30,
        decimal_places=10,
        validators=[must_be_positive],
        help_text="Units after the split for every `old_units` before (2 in a 2 for 1 split).",
    )
    old_units = PlainDecimalField(
        max_digits=30,
        decimal_places=10,
        validators=[must_be_positive],
        help_text="Units before the split that become `new_units` (10 in a 1 for 10 reverse split).",
    )
    cash_in_lieu_price = PlainDecimalField(
        max_digits=30,
        decimal_places=10,
        required=False,
        allow_null=True,
        validators=[must_be_positive],
        help_text="Per new unit, in the asset's currency: each holder's fraction is sold at it on the split's day. "
        "Null: fractional units are kept.",
    )
    currency = serializers.CharField(source="asset.currency", read_only=True)

    class Meta:
        model = Split
        fields = [
            "id",
            "asset",
            "date",
            "new_units",
            "old_units",
            "cash_in_lieu_price",
            "currency",
            "notes",
            "created_at",
            "updated_at",
        ]
        # Uniqueness per (asset, date) and the ratio's rules are the service's full_clean() and the database's.
        validators: list[Any] = []

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        new = attrs.get("new_units", getattr(self.instance, "new_units", None))
        old = attrs.get("old_units", getattr(self.instance, "old_units", None))
        if new is not None and new == old:
            raise serializers.ValidationError(
                {"new_units": ["A split changes the number of units: new and old units cannot be equal."]}
            )
        return attrs

    def create(self, validated_data: dict[str, Any]) -> Split:
        return services.split_create(actor=self.actor, **validated_data)

    def update(self, instance: Split, validated_data: dict[str, Any]) -> Split:
        return services.split_update(actor=self.actor, split=instance, **validated_data)


class SplitViewSet(ScopedModelViewSet):
    """Splits and reverse splits: reference data every staff role that reads prices reads; Operations (and
    superusers) record, change and delete them. A split applies to every holder of the asset from the start of its
    day (positions, lots and average cost restated, prices as recorded); with a cash-in-lieu price, each holder's
    fraction is sold at it. One split per asset and day (400); changing or deleting one that later sales need is
    refused (409)."""

    # The cash-in-lieu sales are clients' allocations: they are read through the allocations door (scoped, their
    # `cash_in_lieu_of` names the split), never listed here where every staff role reads.
    queryset = Split.objects.select_related("asset")
    serializer_class = SplitSerializer
    filterset_class = SplitFilterSet
    ordering_fields = ["date", "created_at"]
    ordering = ["asset_id", "-date"]
    cache_namespace = services.SPLITS_CACHE

    def perform_destroy(self, instance: Split) -> None:
        services.split_delete(actor=self.request.user, split=instance)


class ConvertQuerySerializer(serializers.Serializer):
    base = CurrencyField(help_text="ISO 4217 code of the currency converted from.")
    quote = CurrencyField(help_text="ISO 4217 code of the currency converted to.")
    on = serializers.DateField(required=False, help_text="The day the rate is for; today when absent.")


class ConversionSerializer(serializers.Serializer):
    base = serializers.CharField()
    quote = serializers.CharField()
    on = serializers.DateField(help_text="The day asked for.")
    rate = serializers.CharField(
        help_text="Units of quote for one unit of base, a decimal as a string, unrounded (an inverse or a cross "
        "carries up to 28 significant digits)."
    )
    rate_date = serializers.DateField(
        help_text="The publication day the rate is from: the latest on or before `on` (a cross's older leg)."
    )
    via = serializers.CharField(
        allow_null=True, help_text="The pivot currency a cross went through; null for a direct or inverse rate."
    )


class FxRateViewSet(ScopedModelViewSet):
    """Exchange rates as published: `rate` units of `quote` for one unit of `base` on `date`, one per pair and
    date. Inverses and crosses are derived (`convert/`), never stored. Any write marks every portfolio's history
    changed from the rate's date."""

    queryset = FxRate.objects.all()
    serializer_class = FxRateSerializer
    filterset_class = FxRateFilterSet
    ordering_fields = ["base", "quote", "date", "rate", "created_at"]
    ordering = ["base", "quote", "-date"]
    cache_namespace = services.FX_RATES_CACHE

    def perform_destroy(self, instance: FxRate) -> None:
        services.fx_rate_delete(fx_rate=instance)

    @extend_schema(
        parameters=[ConvertQuerySerializer],
        responses={
            200: ConversionSerializer,
            400: OpenApiResponse(VALIDATION_ERROR.ref, description="A bad currency code or date, by field."),
            404: OpenApiResponse(
                ErrorDetailSerializer,
                description="No rate (direct, inverse or through the pivot) was published on or "
                'before `on`: `{"detail"}` says which pair. A missing rate is never taken as 1.',
            ),
        },
        description="The rate from `base` to `quote` as of the end of `on`: the latest published on or before it, "
        "direct, else inverted, else crossed through the pivot currency (`FX_PIVOT_CURRENCY`, EUR by default). "
        "The answer says which publication day it used (`rate_date`) and the pivot (`via`). 400 naming the field "
        "for a bad currency or date; 404 when no rate can be derived.",
    )
    @action(detail=False, methods=["get"], filter_backends=[], pagination_class=None)
    def convert(self, request: Request) -> Response:
        query = ConvertQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        base, quote = query.validated_data["base"], query.validated_data["quote"]
        on = query.validated_data.get("on") or timezone.localdate()
        try:
            found = fx_rate(base=base, quote=quote, on=on)
        except MissingRate as error:
            # 404, not 409: nothing conflicts; the rate asked for does not exist (yet), as an unknown id does not.
            raise NotFound(str(error)) from None
        answer = {
            "base": base,
            "quote": quote,
            "on": on,
            "rate": format(found.rate, "f"),
            "rate_date": found.date,
            "via": found.via,
        }
        return Response(ConversionSerializer(answer).data)


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
    taxes = PlainDecimalField(
        max_digits=20,
        decimal_places=4,
        validators=[must_not_be_negative],
        required=False,
        default=Decimal("0"),
        help_text="Transaction tax or withholding on a buy or sell, in the asset's currency; settled with the trade "
        "(a buy pays quantity x price + fees + taxes, a sell brings quantity x price - fees - taxes).",
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
            "taxes",
            "currency",
            "date",
            "notes",
            "settlement",
            "counterpart",
            "cash_in_lieu_of",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["settlement", "counterpart", "cash_in_lieu_of"]
        # A page of a long list: every row through one compiled function, not DRF's per-field machinery.
        list_serializer_class = LeanListSerializer

    def create(self, validated_data: dict[str, Any]) -> Allocation:
        return services.allocation_create(actor=self.actor, **validated_data)

    def update(self, instance: Allocation, validated_data: dict[str, Any]) -> Allocation:
        return services.allocation_update(actor=self.actor, allocation=instance, **validated_data)


class AllocationViewSet(IdempotentCreateMixin, LeanListMixin, ScopedModelViewSet):
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
    # Allocations grow to millions of rows: page numbers by default, cursor pages (`?cursor=`) however deep.
    pagination_class = LargeListPagination

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


class DividendSerializer(ActorContextMixin, PortfolioPlacementMixin, serializers.ModelSerializer):
    portfolio = VisiblePortfolioField(required=False, help_text="Id of the portfolio paid.")
    client = VisibleClientField(
        required=False,
        help_text="Id of the client, instead of `portfolio` when the client has a single portfolio; if both are "
        "given they must agree.",
    )
    currency = CurrencyField(required=False, help_text="ISO 4217 code paid in; the asset's currency when absent.")
    gross = PlainDecimalField(
        max_digits=20,
        decimal_places=4,
        validators=[must_be_positive],
        required=False,
        allow_null=True,
        help_text="Before withholding tax. Give it, or `amount_per_unit` (times `units`), not both.",
    )
    amount_per_unit = PlainDecimalField(
        max_digits=30,
        decimal_places=10,
        validators=[must_be_positive],
        required=False,
        allow_null=True,
        help_text="Per unit held at the close before the ex-date; the gross is then this times `units`.",
    )
    withholding_tax = PlainDecimalField(
        max_digits=20, decimal_places=4, validators=[must_not_be_negative], required=False, default=Decimal("0")
    )
    units = PlainDecimalField(
        max_digits=30, decimal_places=10, read_only=True, help_text="Units held at the close before the ex-date."
    )
    net = PlainDecimalField(
        max_digits=20, decimal_places=4, read_only=True, help_text="Gross less withholding tax: the cash posted."
    )

    class Meta:
        model = Dividend
        fields = [
            "id",
            "client",
            "portfolio",
            "asset",
            "ex_date",
            "pay_date",
            "currency",
            "units",
            "amount_per_unit",
            "gross",
            "withholding_tax",
            "net",
            "notes",
            "cash",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["cash"]
        # The natural key's uniqueness is the service's full_clean() and the database's.
        validators: list[Any] = []

    def create(self, validated_data: dict[str, Any]) -> Dividend:
        return dividend_services.dividend_create(actor=self.actor, **validated_data)

    def update(self, instance: Dividend, validated_data: dict[str, Any]) -> Dividend:
        return dividend_services.dividend_update(actor=self.actor, dividend=instance, **validated_data)


class DividendViewSet(ScopedModelViewSet):
    """Cash dividends paid to clients' portfolios. Recording one posts its net cash (gross less withholding tax)
    as a `dividend` transaction on the pay date; changing one reverses that cash and posts it anew; deleting one
    reverses it (409 when the cash has been spent since). The portfolio must hold units of the asset at the close
    before the ex-date (400 on `ex_date` otherwise); one dividend per portfolio, asset and ex-date."""

    queryset = Dividend.objects.select_related("asset")
    serializer_class = DividendSerializer
    filterset_class = DividendFilterSet
    ordering_fields = ["pay_date", "ex_date", "gross", "created_at", "id"]
    ordering = ["-pay_date", "-id"]

    def perform_destroy(self, instance: Dividend) -> None:
        dividend_services.dividend_delete(actor=self.request.user, dividend=instance)
