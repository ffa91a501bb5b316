"""Model portfolios and rebalancing: the API's door onto `trading.rebalancing`.

Model portfolios are firm-wide (Operations manage them, with their weights in one write); a portfolio follows one
through a model assignment (advisors manage their clients'); a proposal is computed for a portfolio and stored, then
accepted once into draft orders; the drift report lists followed portfolios with their largest drift.
"""

from typing import Any

from django.db import transaction
from django.db.models import Prefetch
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from clients.api import VisiblePortfolioField
from clients.filters import visible_portfolios
from holdings.models import Asset
from portfolio_site.api.fields import PlainDecimalField
from portfolio_site.api.permissions import ModelPermissions
from portfolio_site.api.viewsets import ScopedModelViewSet, ScopedViewSetMixin
from portfolio_site.money import AMOUNT_DIGITS, AMOUNT_PLACES

from . import rebalancing
from .filters import ModelAssignmentFilterSet, RebalanceProposalFilterSet
from .models import BrokerConnection, ModelAssignment, ModelPortfolio, ModelWeight, Order, RebalanceProposal


def _percent(**kwargs: Any) -> PlainDecimalField:
    return PlainDecimalField(max_digits=7, decimal_places=4, **kwargs)


# --- Model portfolios ------------------------------------------------------------------------------------------


class ModelWeightSerializer(serializers.ModelSerializer):
    asset = serializers.PrimaryKeyRelatedField(queryset=Asset.objects.all())
    weight = _percent(help_text="Percent of the portfolio's value, above 0 and at most 100.")

    class Meta:
        model = ModelWeight
        fields = ["asset", "weight"]
        validators: list[Any] = []


class ModelPortfolioSerializer(serializers.ModelSerializer):
    weights = ModelWeightSerializer(
        many=True,
        required=False,
        help_text="The target weight of each asset. Given, they replace the model's weights; with `cash_weight` they "
        "must sum to exactly 100 (400 on `weights` otherwise).",
    )
    cash_weight = _percent(required=False, help_text="The cash target, in percent of the portfolio (0 to 100).")
    drift_band = _percent(
        required=False, help_text="Percentage points (absolute) a weight may drift before it is traded back (0 to 100)."
    )
    minimum_trade = PlainDecimalField(
        max_digits=AMOUNT_DIGITS,
        decimal_places=AMOUNT_PLACES,
        required=False,
        help_text="No order worth less than this is proposed, in the portfolio's base currency.",
    )

    class Meta:
        model = ModelPortfolio
        fields = [
            "id",
            "name",
            "cash_weight",
            "drift_band",
            "minimum_trade",
            "fractional",
            "notes",
            "weights",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]

    def _save(self, instance: ModelPortfolio, validated_data: dict[str, Any]) -> ModelPortfolio:
        weights = validated_data.pop("weights", None)
        for name, value in validated_data.items():
            setattr(instance, name, value)
        given = None if weights is None else [rebalancing.WeightInput(w["asset"], w["weight"]) for w in weights]
        return rebalancing.model_portfolio_save(model=instance, weights=given)

    def create(self, validated_data: dict[str, Any]) -> ModelPortfolio:
        return self._save(ModelPortfolio(), validated_data)

    def update(self, instance: ModelPortfolio, validated_data: dict[str, Any]) -> ModelPortfolio:
        return self._save(instance, validated_data)


class ModelPortfolioViewSet(ScopedModelViewSet):
    """Firm-wide model portfolios: target weights per asset and a cash weight summing to 100%, a drift band, a
    minimum trade and whether units may be fractional. Read by advisors and auditors, managed by Operations. DELETE
    only a model no portfolio follows and no proposal names (409 otherwise)."""

    queryset = ModelPortfolio.objects.prefetch_related(
        Prefetch("weights", ModelWeight.objects.order_by("-weight", "asset_id"))
    )
    serializer_class = ModelPortfolioSerializer
    filterset_fields = ["fractional"]
    ordering_fields = ["name", "created_at"]
    ordering = ["name"]

    def perform_destroy(self, instance: ModelPortfolio) -> None:
        rebalancing.model_portfolio_delete(model=instance)


# --- Assignments and the drift report --------------------------------------------------------------------------


class ModelAssignmentSerializer(serializers.ModelSerializer):
    portfolio = VisiblePortfolioField(help_text="Id of the portfolio that follows the model.")
    model = serializers.PrimaryKeyRelatedField(queryset=ModelPortfolio.objects.all(), help_text="The model's id.")

    class Meta:
        model = ModelAssignment
        fields = ["id", "client", "portfolio", "model", "created_at", "updated_at"]
        read_only_fields = ["client", "created_at", "updated_at"]
        # One model per portfolio is the database's rule, reported by full_clean on `portfolio`.
        validators: list[Any] = []

    def create(self, validated_data: dict[str, Any]) -> ModelAssignment:
        return rebalancing.model_assignment_save(
            actor=self.context["request"].user, assignment=ModelAssignment(**validated_data)
        )

    def update(self, instance: ModelAssignment, validated_data: dict[str, Any]) -> ModelAssignment:
        for name, value in validated_data.items():
            setattr(instance, name, value)
        return rebalancing.model_assignment_save(actor=self.context["request"].user, assignment=instance)


class ModelAssignmentViewSet(ScopedModelViewSet):
    """Portfolios following model portfolios (one model each), scoped like every client's row: advisors manage
    their clients', Operations and auditors read them all."""

    queryset = ModelAssignment.objects.all()
    serializer_class = ModelAssignmentSerializer
    filterset_class = ModelAssignmentFilterSet
    ordering_fields = ["created_at", "portfolio"]
    ordering = ["portfolio_id"]

    def perform_destroy(self, instance: ModelAssignment) -> None:
        rebalancing.model_assignment_delete(actor=self.request.user, assignment=instance)


class DriftSerializer(serializers.Serializer):
    assignment = serializers.IntegerField(source="pk")
    client = serializers.IntegerField(source="client_id")
    portfolio = serializers.IntegerField(source="portfolio_id")
    portfolio_name = serializers.CharField(source="portfolio.name")
    base_currency = serializers.CharField(source="portfolio.base_currency")
    model = serializers.IntegerField(source="model_id")
    model_name = serializers.CharField(source="model.name")
    drift_band = _percent(source="model.drift_band", help_text="The model's band, in percentage points.")
    # Wide: a portfolio whose cash went negative (a fill beyond its hold) can be thousands of points off.
    largest_drift = PlainDecimalField(
        max_digits=30,
        decimal_places=4,
        source="drift.largest",
        allow_null=True,
        help_text="The largest distance of an asset's weight from its target, in percentage points; null when the "
        "portfolio cannot be valued (see `missing`) or is worth nothing.",
    )
    outside_band = serializers.BooleanField(
        source="drift.outside_band", allow_null=True, help_text="Whether the largest drift exceeds the band."
    )
    missing = serializers.ListField(
        source="drift.missing",
        child=serializers.CharField(),
        help_text="The prices and rates it could not be valued without.",
    )


OUTSIDE_BAND = OpenApiParameter(
    "outside_band",
    bool,
    description="true: only the portfolios outside their band; false: only those inside (or not valued).",
)


class DriftView(ScopedViewSetMixin, GenericAPIView):
    """The drift report: every followed portfolio the caller may see, its model, its largest drift from the model
    (percentage points) and whether that is outside the model's band. Valued like the proposal (positions and cash
    at the latest prices and rates, in the portfolio's base currency), the whole page in a fixed number of
    queries."""

    queryset = ModelAssignment.objects.select_related("model", "portfolio")
    serializer_class = DriftSerializer
    filterset_class = ModelAssignmentFilterSet
    ordering_fields = ["portfolio", "created_at"]
    ordering = ["portfolio_id"]

    @extend_schema(parameters=[OUTSIDE_BAND], responses=DriftSerializer(many=True))
    def get(self, request: Request) -> Response:
        assignments = list(self.filter_queryset(self.get_queryset()))
        if (wanted := request.query_params.get("outside_band")) is not None:
            if wanted.lower() not in ("true", "false", "1", "0"):
                raise serializers.ValidationError({"outside_band": ["Give true or false."]})
            # The drift is computed, not stored: the whole filtered set is valued (in a fixed number of queries)
            # before the filter and the page are applied to it.
            outside = wanted.lower() in ("true", "1")
            found = rebalancing.drifts(assignments)
            assignments = [a for a in assignments if bool(found[a.portfolio_id].outside_band) is outside]
            for assignment in assignments:
                assignment.drift = found[assignment.portfolio_id]  # type: ignore[attr-defined]
            page = self.paginate_queryset(assignments)
            assert page is not None
        else:
            page = self.paginate_queryset(assignments)
            assert page is not None
            found = rebalancing.drifts(page)
            for assignment in page:
                assignment.drift = found[assignment.portfolio_id]  # type: ignore[attr-defined]
        return self.get_paginated_response(self.get_serializer(page, many=True).data)


# --- Proposals -------------------------------------------------------------------------------------------------


class ProposedOrderSerializer(serializers.Serializer):
    asset = serializers.IntegerField()
    asset_label = serializers.CharField(help_text="Ticker.exchange.")
    side = serializers.ChoiceField(choices=Order.Side.choices)
    quantity = serializers.CharField(help_text="Units, rounded toward zero to the asset's lots.")
    price = serializers.CharField(help_text="The latest close used, per unit in the asset's currency.")
    price_date = serializers.DateField()
    currency = serializers.CharField(help_text="The asset's currency.")
    value = serializers.CharField(help_text="quantity x price, in the asset's currency.")
    fx_rate = serializers.CharField(help_text="Units of the base currency per unit of the asset's currency.")
    value_base = serializers.CharField(help_text="The value in the portfolio's base currency.")
    weight_before = serializers.CharField(help_text="Percent of the portfolio's value.")
    weight_after = serializers.CharField(help_text="Percent of the portfolio's value once every order is filled.")
    weight_target = serializers.CharField()


class ProposedWeightSerializer(serializers.Serializer):
    asset = serializers.IntegerField()
    asset_label = serializers.CharField()
    weight_before = serializers.CharField()
    weight_after = serializers.CharField()
    weight_target = serializers.CharField()


class ProposedCashSerializer(serializers.Serializer):
    currency = serializers.CharField()
    before = serializers.CharField(help_text="The balance.")
    free_before = serializers.CharField(help_text="The balance less its holds: what buys may spend.")
    after = serializers.CharField()


class RateUsedSerializer(serializers.Serializer):
    currency = serializers.CharField()
    to = serializers.CharField(help_text="The base currency.")
    rate = serializers.CharField(help_text="Units of `to` per unit of `currency`.")
    date = serializers.DateField(help_text="The day the rate was published (the latest on or before today).")
    via = serializers.CharField(help_text="The pivot currency of a crossed rate; empty for a direct one.")


class ProposalDocumentSerializer(serializers.Serializer):
    """The proposal as computed. Decimals as strings: money rounded to its currency's minor unit, weights in
    percent to four places, quantities and prices exact."""

    model = serializers.IntegerField()
    model_name = serializers.CharField()
    base_currency = serializers.CharField()
    total_value = serializers.CharField(help_text="V: positions and cash, in the base currency.")
    cash_before = serializers.CharField()
    cash_after = serializers.CharField()
    cash_target = serializers.CharField(help_text="cash_weight x V.")
    cash_weight_before = serializers.CharField()
    cash_weight_after = serializers.CharField()
    cash_weight_target = serializers.CharField()
    drift_band = serializers.CharField()
    orders = ProposedOrderSerializer(many=True, help_text="Sells first, then buys, largest shortfall first.")
    weights = ProposedWeightSerializer(many=True, help_text="Every asset held or in the model.")
    cash = ProposedCashSerializer(many=True, help_text="Per currency.")
    rates = RateUsedSerializer(many=True, help_text="The rate used for each currency.")
    warnings = serializers.ListField(
        child=serializers.CharField(),
        help_text="What the proposal could not do: reduced or skipped buys, units on hold, FX not proposed.",
    )


class RebalanceProposalSerializer(serializers.ModelSerializer):
    proposal = ProposalDocumentSerializer(read_only=True)
    created_by = serializers.IntegerField(source="created_by_id", read_only=True, allow_null=True)
    accepted_by = serializers.IntegerField(source="accepted_by_id", read_only=True, allow_null=True)
    orders: serializers.PrimaryKeyRelatedField = serializers.PrimaryKeyRelatedField(
        many=True, read_only=True, help_text="The draft orders its acceptance created."
    )

    class Meta:
        model = RebalanceProposal
        fields = [
            "id",
            "client",
            "portfolio",
            "model",
            "created_by",
            "created_at",
            "basis",
            "accepted_at",
            "accepted_by",
            "orders",
            "proposal",
        ]
        read_only_fields = fields


class AcceptSerializer(serializers.Serializer):
    connection = serializers.PrimaryKeyRelatedField(
        queryset=BrokerConnection.objects.all(),
        required=False,
        allow_null=True,
        default=None,
        help_text="The broker connection to place the orders through; when absent, the portfolio's only one.",
    )


PORTFOLIO_ID = OpenApiParameter("id", int, OpenApiParameter.PATH, description="The portfolio's id.")


class RebalanceProposalCreateView(GenericAPIView):
    """Proposes the orders that bring a portfolio back to its model."""

    queryset = RebalanceProposal.objects.all()  # for the permission check: proposing needs add_rebalanceproposal
    serializer_class = RebalanceProposalSerializer

    @extend_schema(
        parameters=[PORTFOLIO_ID],
        request=None,
        responses={201: RebalanceProposalSerializer},
        description="Computes the orders that bring the portfolio back to its model from its current value and its "
        "free cash and units, and stores them as a proposal (201, with its id: accept it with POST "
        "/rebalance-proposals/{id}/accept/). 404 for a portfolio the caller may not see; 409 when it follows no "
        "model, is closed, or an asset lacks a price or a currency a rate to the base currency (the detail names "
        "it). See README, 'Model portfolios and rebalancing'.",
    )
    def post(self, request: Request, pk: int) -> Response:
        portfolio = get_object_or_404(visible_portfolios(request), pk=pk)
        proposal = rebalancing.rebalance_proposal_create(actor=request.user, portfolio=portfolio)
        return Response(self.get_serializer(proposal).data, status=status.HTTP_201_CREATED)


class ProposalPermissions(ModelPermissions):
    """The model's permissions, and for accepting: proposing (`add_rebalanceproposal`) and creating orders
    (`add_order`)."""

    def has_permission(self, request, view) -> bool:  # type: ignore[no-untyped-def]
        if getattr(view, "action", None) == "accept":
            needed = ["trading.view_rebalanceproposal", "trading.add_rebalanceproposal", "trading.add_order"]
            return bool(request.user and request.user.is_authenticated and request.user.has_perms(needed))
        return super().has_permission(request, view)


class RebalanceProposalViewSet(
    ScopedViewSetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Stored rebalancing proposals, scoped like every client's row; made by POST
    /portfolios/{id}/rebalance-proposal/, accepted once, never edited."""

    queryset = RebalanceProposal.objects.prefetch_related("orders")
    serializer_class = RebalanceProposalSerializer
    filterset_class = RebalanceProposalFilterSet
    permission_classes = [ProposalPermissions]
    ordering_fields = ["created_at", "id"]
    ordering = ["-created_at", "-id"]

    @extend_schema(
        request=AcceptSerializer,
        responses={200: RebalanceProposalSerializer},
        description="Creates the proposal's orders as drafts, in one transaction, for the advisor to submit "
        "(POST /orders/{id}/submit/). 409 when it was accepted already, is older than "
        "TRADING_PROPOSAL_MAX_AGE_MINUTES (15 by default), or what it was computed from has changed (positions, "
        "holds, cash, prices, rates, the model): propose again. 400 on `connection` as for an order. Needs "
        "`trading.add_rebalanceproposal` and `trading.add_order`.",
    )
    @action(detail=True, methods=["post"], filter_backends=[])
    def accept(self, request: Request, pk: str | None = None) -> Response:
        proposal = self.get_object()
        serializer = AcceptSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        with transaction.atomic():
            accepted = rebalancing.rebalance_proposal_accept(
                actor=request.user, proposal=proposal, connection=serializer.validated_data["connection"]
            )
        fresh = self.get_queryset().get(pk=accepted.pk)
        return Response(self.get_serializer(fresh).data)
