"""The realized-gains door, for a portfolio and for a client (all its portfolios): every sale of a tax year.

Thin: check visibility, read the parameters, call `holdings.realized`, round and serialize; cached like the other
reports (`CachedReportView`: the caller's visibility, the object, the parameters, the portfolios' data versions,
which every movement, price and split write bumps, and the rates' and assets' namespaces).
"""

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from clients.filters import visible_clients
from clients.models import Client

from . import realized, valuation
from .services import SPLITS_CACHE
from .valuation_api import ERRORS, ID, CachedReportView, PresentedDecimalField, _quantity


def _base(help_text: str) -> PresentedDecimalField:
    return PresentedDecimalField(
        valuation_currency=True, help_text=f"{help_text} In the base currency; null when a rate is missing."
    )


def _own(help_text: str) -> PresentedDecimalField:
    return PresentedDecimalField(allow_null=False, help_text=f"{help_text} In the asset's currency.")


TERM_HELP = "`long` when sold more than one year after acquisition, else `short`; null when unknown."


class RealizedLotSerializer(serializers.Serializer):
    acquired = serializers.DateField(
        allow_null=True, help_text="The lot's purchase day (average cost: the day the position was last opened)."
    )
    days_held = serializers.IntegerField(allow_null=True)
    term = serializers.ChoiceField(choices=[realized.SHORT, realized.LONG], allow_null=True, help_text=TERM_HELP)
    units = _quantity(allow_null=False)
    proceeds = _own("Its share of the sale's proceeds, by units.")
    cost = _own("")
    gain = _own("")
    gain_base = _base("Proceeds at the sale day's rate less cost at the lot's own rates.")


class RealizedSaleSerializer(serializers.Serializer):
    allocation = serializers.IntegerField(source="allocation_id", help_text="The sell.")
    portfolio = serializers.IntegerField(source="portfolio_id")
    date = serializers.DateField()
    asset = serializers.IntegerField(source="asset_id")
    ticker = serializers.CharField()
    name = serializers.CharField()
    currency = serializers.CharField(help_text="The asset's currency.")
    units = _quantity(allow_null=False)
    proceeds = _own("Units x price less fees.")
    cost = _own("By the cost method.")
    gain = _own("Proceeds less cost.")
    proceeds_base = _base("At the sale day's rate.")
    cost_base = _base("At each lot's own purchase day's rate.")
    gain_base = _base("")
    cash_in_lieu_of = serializers.IntegerField(
        allow_null=True, help_text="The split whose fraction this sale paid in cash; null for an ordinary sale."
    )
    lots = RealizedLotSerializer(many=True, help_text="FIFO: the lots taken; average cost: one share of the pool.")


class RealizedTotalsSerializer(serializers.Serializer):
    currency = serializers.CharField()
    proceeds = _base("")
    cost = _base("")
    gain = _base("")
    short_term_gain = _base("")
    long_term_gain = _base("")


class RealizedCurrencyTotalsSerializer(serializers.Serializer):
    currency = serializers.CharField()
    proceeds = _own("")
    cost = _own("")
    gain = _own("")
    short_term_gain = _own("")
    long_term_gain = _own("")


class RealizedMissingRateSerializer(serializers.Serializer):
    base = serializers.CharField()
    quote = serializers.CharField()
    on = serializers.DateField()


class RealizedGainsSerializer(serializers.Serializer):
    year = serializers.IntegerField()
    start = serializers.DateField()
    end = serializers.DateField()
    currency = serializers.CharField(help_text="The base currency of the totals.")
    cost_method = serializers.ChoiceField(choices=valuation.COST_METHODS)
    sales = RealizedSaleSerializer(many=True)
    totals = RealizedTotalsSerializer(help_text="In the base currency, sales with a missing rate left out.")
    by_currency = RealizedCurrencyTotalsSerializer(many=True, help_text="Per asset currency, every sale.")
    missing_fx = RealizedMissingRateSerializer(many=True)


class PortfolioRealizedGainsSerializer(RealizedGainsSerializer):
    portfolio = serializers.IntegerField()
    client = serializers.IntegerField()


class ClientRealizedGainsSerializer(RealizedGainsSerializer):
    client = serializers.IntegerField()
    portfolios = serializers.ListField(child=serializers.IntegerField())


class ParametersSerializer(serializers.Serializer):
    year = serializers.IntegerField(min_value=1900, max_value=9998, help_text="The tax year (1 January - 31 December).")
    cost_method = serializers.ChoiceField(
        choices=valuation.COST_METHODS,
        default=valuation.AVERAGE,
        help_text="`average` (moving average, the default) or `fifo` (first in, first out, by lots).",
    )


PARAMETERS = [
    OpenApiParameter("year", OpenApiTypes.INT, required=True, description="The tax year, e.g. 2026."),
    OpenApiParameter(
        "cost_method",
        OpenApiTypes.STR,
        enum=list(valuation.COST_METHODS),
        description=str(ParametersSerializer().fields["cost_method"].help_text),
    ),
]
DESCRIPTION = (
    "Every sale of the tax year with its units, proceeds (less fees), cost by the cost method, gain and holding "
    "period: for FIFO per lot taken (days held; `long` term when sold more than one year after purchase), for "
    "average cost one share of the pool, held from the day the position was last opened from zero. Splits are "
    "counted (a lot keeps its purchase day); cash in lieu of a split's fraction is a sale, marked. Totals in the "
    "base currency (proceeds at the sale day's rate, cost at each purchase day's rate) and per asset currency."
)


REPORT_FIELDS = ("year", "start", "end", "currency", "cost_method", "sales", "totals", "by_currency", "missing_fx")


class _RealizedGainsView(CachedReportView):
    parameters_serializer = ParametersSerializer
    cache_prefix = "realized-gains"
    namespaces = (*CachedReportView.namespaces, SPLITS_CACHE)
    output: type[serializers.Serializer]

    def render(self, report: realized.RealizedGains, **ids: Any) -> dict[str, Any]:
        fields = {name: getattr(report, name) for name in REPORT_FIELDS}
        return dict(self.output({**fields, **ids}, context={"currency": report.currency}).data)


class PortfolioRealizedGainsView(_RealizedGainsView):
    """A portfolio's realized gains of a tax year."""

    output = PortfolioRealizedGainsSerializer

    @extend_schema(
        parameters=[ID, *PARAMETERS],
        responses={200: PortfolioRealizedGainsSerializer, **ERRORS},
        description=DESCRIPTION + " In the portfolio's base currency.",
    )
    def get(self, request: Request, pk: int) -> Response:
        portfolio = self.visible_portfolio(pk)

        def compute(parameters: dict[str, Any]) -> dict[str, Any]:
            report = realized.realized_gains(
                portfolio_ids=[portfolio.pk], currency=portfolio.base_currency, **parameters
            )
            return self.render(report, portfolio=portfolio.pk, client=portfolio.client_id)

        return self.respond(scope=f"portfolio:{portfolio.pk}", versions=str(portfolio.data_version), compute=compute)


class ClientRealizedGainsView(_RealizedGainsView):
    """A client's realized gains of a tax year over all its portfolios."""

    output = ClientRealizedGainsSerializer

    @extend_schema(
        parameters=[ID, *PARAMETERS],
        responses={200: ClientRealizedGainsSerializer, **ERRORS},
        description=DESCRIPTION + " All the client's portfolios (a lot never crosses portfolios), in the client's "
        "base currency.",
    )
    def get(self, request: Request, pk: int) -> Response:
        client: Client = get_object_or_404(visible_clients(request), pk=pk)
        portfolios = list(client.portfolios.order_by("pk").values_list("pk", "data_version"))
        ids = [portfolio_id for portfolio_id, _ in portfolios]

        def compute(parameters: dict[str, Any]) -> dict[str, Any]:
            report = realized.realized_gains(portfolio_ids=ids, currency=client.base_currency, **parameters)
            return self.render(report, client=client.pk, portfolios=ids)

        return self.respond(scope=f"client:{client.pk}", versions=repr(portfolios), compute=compute)


__all__ = ["ClientRealizedGainsView", "PortfolioRealizedGainsView"]
