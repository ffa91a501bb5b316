"""The performance doors: a portfolio's and a client's returns, and one position's money-weighted return.

Thin: check visibility, read the parameters, call `holdings.performance`, round and serialize. Cached like the
valuations (`holdings.valuation_api`): per caller's visibility, object, parameters and the data versions of the
portfolios read, plus the rates', assets' and prices' namespaces (a benchmark's prices are in no portfolio's
data version).
"""

from decimal import localcontext
from typing import Any

from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from clients.filters import visible_clients
from clients.models import Client
from portfolio_site.api.fields import CurrencyField
from portfolio_site.api.schema import VALIDATION_ERROR

from . import performance
from .models import Asset
from .services import PRICES_CACHE
from .valuation_api import CachedReportView, PresentedDecimalField

# Returns are fractions (0.155 is 15.5%), shown to ten places: past the 1e-9 the money-weighted solver promises.
RATE_PLACES = 10


class RateField(PresentedDecimalField):
    """A return, to ten places. A short period's money-weighted return per year can be astronomical (+50% in a day
    is about 1e64 a year): the context holds all its digits rather than failing."""

    def get_attribute(self, instance: Any) -> Any:
        with localcontext() as context:
            context.prec = 400
            return super().get_attribute(instance)


def _rate(help_text: str, **kwargs: Any) -> PresentedDecimalField:
    return RateField(places=RATE_PLACES, help_text=f"{help_text} A fraction (0.155 is 15.5%).", **kwargs)


def _amount(help_text: str, **kwargs: Any) -> PresentedDecimalField:
    return PresentedDecimalField(valuation_currency=True, help_text=f"{help_text} In the report's currency.", **kwargs)


class FiguresSerializer(serializers.Serializer):
    start = serializers.DateField(help_text="The period starts at the beginning of this day.")
    end = serializers.DateField(help_text="And ends at the end of this day.")
    available = serializers.BooleanField(help_text="False when there is no history over the period.")
    first_day = serializers.DateField(
        allow_null=True, help_text="The first day with money invested: where the returns effectively start."
    )
    start_value = _amount("Value at the end of the day before `start`.")
    end_value = _amount("Value at the end of `end`.")
    inflows = _amount("Deposits and transfers in over the period.")
    outflows = _amount("Withdrawals and transfers out over the period.")
    gain = _amount("End value less start value less net flows.")
    time_weighted = _rate("Time-weighted return over the period, daily sub-periods chained; null without history.")
    time_weighted_annualized = _rate("The time-weighted return per year; null for periods shorter than a year.")
    money_weighted = _rate("Money-weighted return (IRR, actual/365) per year; null when none exists.")
    money_weighted_error = serializers.CharField(allow_null=True, help_text="Why there is no money-weighted return.")
    simple = _rate("Gain over start value plus inflows; null when nothing was invested.")


class PeriodSerializer(FiguresSerializer):
    name = serializers.ChoiceField(choices=performance.PERIODS, help_text="MTD, YTD, 1Y, 3Y or since_inception.")


class DaySerializer(serializers.Serializer):
    date = serializers.DateField()
    value = _amount("Value at the end of the day.", allow_null=False)
    inflow = _amount("Money and units in from outside that day, counted at its start.", allow_null=False)
    outflow = _amount("Money and units out that day, counted at its end.", allow_null=False)
    external_flow = _amount("The net of the two: in (+) or out (-).", allow_null=False)
    complete = serializers.BooleanField(help_text="False when a price or a rate was missing that day.")
    daily_return = _rate("The day's time-weighted return; null when nothing was invested over the day.")
    cumulative_return = _rate("Time-weighted return from the period's start through this day.", allow_null=False)
    benchmark_cumulative_return = _rate("The benchmark's price return over the same days; null without one.")


class BenchmarkSerializer(serializers.Serializer):
    asset = serializers.IntegerField(source="asset_id")
    ticker = serializers.CharField()
    name = serializers.CharField()
    currency = serializers.CharField(help_text="The asset's currency.")
    start = serializers.DateField(allow_null=True, help_text="The day whose close the return starts from.")
    start_close = _amount("The close on or before `start`, at that day's rate.")
    end_close = _amount("The close on or before the period's end, at that day's rate.")
    cumulative = _rate("Price return over the period, in the report's currency.")
    annualized = _rate("Per year; null for periods shorter than a year.")


def _inline_schema(serializer: serializers.Serializer) -> dict[str, Any]:
    """A nullable object's schema, inline: openapi-core ignores `nullable` beside the `allOf` drf-spectacular gives
    a nullable nested serializer, and would refuse a true null."""
    kinds = {
        serializers.IntegerField: {"type": "integer"},
        serializers.DateField: {"type": "string", "format": "date"},
        serializers.DecimalField: {"type": "string", "format": "decimal"},
        serializers.CharField: {"type": "string"},
    }
    properties = {}
    for name, field in serializer.fields.items():
        kind = next(schema for cls, schema in kinds.items() if isinstance(field, cls))
        properties[name] = {**kind, "nullable": field.allow_null, "description": str(field.help_text or "")}
    return {"type": "object", "nullable": True, "properties": properties, "required": sorted(properties)}


@extend_schema_field(_inline_schema(BenchmarkSerializer()))
class NullableBenchmarkField(serializers.Field):
    """The benchmark, or null when none was asked for (see `_inline_schema`)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(read_only=True, allow_null=True, **kwargs)

    def to_representation(self, value: Any) -> Any:
        return BenchmarkSerializer(value, context=self.context).data


class MissingRateSerializer(serializers.Serializer):
    base = serializers.CharField()
    quote = serializers.CharField()
    on = serializers.DateField(help_text="The first day the rate was needed and missing.")


class PerformanceSerializer(serializers.Serializer):
    currency = serializers.CharField(help_text="The report's currency.")
    inception = serializers.DateField(allow_null=True, help_text="The first day of the history.")
    figures = FiguresSerializer(help_text="The requested period.")
    periods = PeriodSerializer(many=True, help_text="Named periods ending on `end`.")
    benchmark = NullableBenchmarkField(help_text="With `benchmark`: its price return over the same days.")
    complete = serializers.BooleanField(help_text="False when any day of the period lacked a price or a rate.")
    incomplete_days = serializers.ListField(child=serializers.DateField())
    missing_fx = MissingRateSerializer(many=True)
    warnings = serializers.ListField(child=serializers.CharField())
    series = DaySerializer(many=True, help_text="The period's daily values, flows and returns.")


class PortfolioPerformanceSerializer(PerformanceSerializer):
    portfolio = serializers.IntegerField()
    client = serializers.IntegerField()


class ClientPerformanceSerializer(PerformanceSerializer):
    client = serializers.IntegerField()
    portfolios = serializers.ListField(child=serializers.IntegerField())


class FlowSerializer(serializers.Serializer):
    date = serializers.DateField()
    amount = _amount("Paid in (-) or received (+).", allow_null=False)
    kind = serializers.CharField(
        help_text="buy, sell, transfer_in, transfer_out, dividend (net, on its pay date), start_value or end_value."
    )
    taxes = _amount("The taxes within `amount` (paid), added back for `money_weighted_before_taxes`.", allow_null=False)


class PositionPerformanceSerializer(serializers.Serializer):
    asset = serializers.IntegerField(source="asset.pk")
    ticker = serializers.CharField(source="asset.ticker")
    name = serializers.CharField(source="asset.name")
    currency = serializers.CharField(help_text="The report's currency.")
    start = serializers.DateField(help_text="The asset's first movement by default.")
    end = serializers.DateField()
    start_quantity = PresentedDecimalField(places=10, allow_null=False, help_text="Units held before `start`.")
    end_quantity = PresentedDecimalField(places=10, allow_null=False, help_text="Units held at the end of `end`.")
    start_value = _amount("Market value of the units held before `start`; null when unpriced.")
    end_value = _amount("Market value at the end; null when unpriced.")
    paid = _amount("Buys and transfers in, fees and taxes included.", allow_null=False)
    received = _amount(
        "Sells and transfers out less fees and taxes, and dividends net of withholding tax.", allow_null=False
    )
    taxes = _amount("Taxes paid on the position's flows over the period.", allow_null=False)
    gain = _amount("End value plus received less paid less start value.")
    money_weighted = _rate("The position's IRR per year (actual/365), taxes paid; null when none exists.")
    money_weighted_before_taxes = _rate(
        "The same IRR with every flow's taxes added back (the return before taxes); null when none exists."
    )
    error = serializers.CharField(allow_null=True, help_text="Why there is no money-weighted return.")
    flows = FlowSerializer(many=True)


class PortfolioPositionPerformanceSerializer(PositionPerformanceSerializer):
    portfolio = serializers.IntegerField()
    client = serializers.IntegerField()


class ClientPositionPerformanceSerializer(PositionPerformanceSerializer):
    client = serializers.IntegerField()
    portfolios = serializers.ListField(child=serializers.IntegerField())


class ParametersSerializer(serializers.Serializer):
    start = serializers.DateField(required=False, help_text="From the beginning of this day; inception by default.")
    end = serializers.DateField(required=False, help_text="To the end of this day; today by default.")
    currency = CurrencyField(required=False, help_text="ISO 4217 code to report in; the base currency by default.")
    benchmark = serializers.IntegerField(required=False, min_value=1, help_text="An asset id to compare with.")

    def validate_benchmark(self, value: int) -> Asset:
        asset = Asset.objects.filter(pk=value).first()
        if asset is None:
            raise serializers.ValidationError("No asset with this id.")
        return asset

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs.setdefault("end", timezone.localdate())
        if attrs.get("start") and attrs["start"] > attrs["end"]:
            raise serializers.ValidationError({"start": "The start is after the end."})
        return attrs


PARAMETER_TYPES = {
    "start": OpenApiTypes.DATE,
    "end": OpenApiTypes.DATE,
    "currency": OpenApiTypes.STR,
    "benchmark": OpenApiTypes.INT,
}


def _parameters(*names: str) -> list[OpenApiParameter]:
    fields = ParametersSerializer().fields
    return [OpenApiParameter(name, PARAMETER_TYPES[name], description=str(fields[name].help_text)) for name in names]


ID = OpenApiParameter("id", int, OpenApiParameter.PATH)
ASSET_ID = OpenApiParameter("asset_id", int, OpenApiParameter.PATH)
ERRORS = {400: VALIDATION_ERROR.ref}


class _PerformanceView(CachedReportView):
    parameters_serializer = ParametersSerializer
    cache_prefix = "performance"
    # A benchmark's prices are in no portfolio's data version.
    namespaces = (*CachedReportView.namespaces, PRICES_CACHE)
    takes_benchmark = True

    def parameters(self) -> dict[str, Any]:
        data = super().parameters()
        if not self.takes_benchmark:
            data.pop("benchmark", None)
        return data


def _render(
    report: performance.Performance | performance.PositionPerformance,
    output: type[serializers.Serializer],
    **ids: Any,
) -> dict[str, Any]:
    return dict(output({**vars(report), **ids}, context={"currency": report.currency}).data)


def _client_portfolios(client: Client) -> list[tuple[int, str, int]]:
    return list(client.portfolios.order_by("pk").values_list("pk", "base_currency", "data_version"))


PERFORMANCE_DESCRIPTION = (
    "Returns over the period from `start` to `end`, read from the daily value table: the time-weighted return "
    "(each day a sub-period, what came in counted at the day's start and what went out at its end, never netted, "
    "chained), annualized "
    "for periods of a year or more; the money-weighted return (IRR, actual/365); the simple return (gain over "
    "start value plus inflows); the daily series with its flows; named periods (MTD, YTD, 1Y, 3Y, since "
    "inception) ending on `end`. With `benchmark`, that asset's price return over the same days, in the report's "
    "currency. Days lacking a price or a rate are listed: their figures leave out what could not be valued."
)


class PortfolioPerformanceView(_PerformanceView):
    """A portfolio's returns over a period."""

    @extend_schema(
        parameters=[ID, *_parameters("start", "end", "currency", "benchmark")],
        responses={200: PortfolioPerformanceSerializer, **ERRORS},
        description=PERFORMANCE_DESCRIPTION + " In the portfolio's base currency by default.",
    )
    def get(self, request: Request, pk: int) -> Response:
        portfolio = self.visible_portfolio(pk)

        def compute(parameters: dict[str, Any]) -> dict[str, Any]:
            report = performance.portfolio_performance(portfolio=portfolio, **parameters)
            return _render(report, PortfolioPerformanceSerializer, portfolio=portfolio.pk, client=portfolio.client_id)

        return self.respond(scope=f"portfolio:{portfolio.pk}", versions=str(portfolio.data_version), compute=compute)


class ClientPerformanceView(_PerformanceView):
    """A client's returns over all its portfolios."""

    @extend_schema(
        parameters=[ID, *_parameters("start", "end", "currency", "benchmark")],
        responses={200: ClientPerformanceSerializer, **ERRORS},
        description=PERFORMANCE_DESCRIPTION
        + " All the client's portfolios as one, in its base currency by default: each day's values and flows are "
        "summed after converting each portfolio's at the day's rate; transfers between them are no flow of the "
        "client's and are left out.",
    )
    def get(self, request: Request, pk: int) -> Response:
        client: Client = get_object_or_404(visible_clients(request), pk=pk)
        portfolios = _client_portfolios(client)

        def compute(parameters: dict[str, Any]) -> dict[str, Any]:
            pairs = [(pk, base) for pk, base, _ in portfolios]
            report = performance.client_performance(client=client, portfolios=pairs, **parameters)
            return _render(report, ClientPerformanceSerializer, client=client.pk, portfolios=[p for p, _ in pairs])

        return self.respond(scope=f"client:{client.pk}", versions=repr(portfolios), compute=compute)


POSITION_DESCRIPTION = (
    "One asset's money-weighted return (IRR, actual/365): its buys and transfers in paid, its sells and transfers "
    "out received (at their recorded price, or the day's close when that is 0; fees and taxes included), its "
    "dividends received on their pay dates (net of withholding tax, in their own currency converted), the "
    "position's market value before `start` paid and at `end` received, each at its day's rate to the report's "
    "currency. `start` is the asset's first movement by default. Reported with taxes (`money_weighted`) and with "
    "taxes added back (`money_weighted_before_taxes`)."
)


class _PositionPerformanceView(_PerformanceView):
    takes_benchmark = False


class PortfolioPositionPerformanceView(_PositionPerformanceView):
    """One asset's money-weighted return in a portfolio."""

    @extend_schema(
        parameters=[ID, ASSET_ID, *_parameters("start", "end", "currency")],
        responses={200: PortfolioPositionPerformanceSerializer, **ERRORS},
        description=POSITION_DESCRIPTION + " In the portfolio's base currency by default.",
    )
    def get(self, request: Request, pk: int, asset_id: int) -> Response:
        portfolio = self.visible_portfolio(pk)
        asset = get_object_or_404(Asset.objects.all(), pk=asset_id)

        def compute(parameters: dict[str, Any]) -> dict[str, Any]:
            report = performance.position_performance(
                portfolio_ids=[portfolio.pk],
                asset=asset,
                currency=parameters.get("currency") or portfolio.base_currency,
                start=parameters.get("start"),
                end=parameters["end"],
            )
            return _render(
                report, PortfolioPositionPerformanceSerializer, portfolio=portfolio.pk, client=portfolio.client_id
            )

        return self.respond(
            scope=f"portfolio:{portfolio.pk}:asset:{asset.pk}", versions=str(portfolio.data_version), compute=compute
        )


class ClientPositionPerformanceView(_PositionPerformanceView):
    """One asset's money-weighted return over a client's portfolios."""

    @extend_schema(
        parameters=[ID, ASSET_ID, *_parameters("start", "end", "currency")],
        responses={200: ClientPositionPerformanceSerializer, **ERRORS},
        description=POSITION_DESCRIPTION + " All the client's portfolios, in its base currency by default.",
    )
    def get(self, request: Request, pk: int, asset_id: int) -> Response:
        client: Client = get_object_or_404(visible_clients(request), pk=pk)
        asset = get_object_or_404(Asset.objects.all(), pk=asset_id)
        portfolios = _client_portfolios(client)
        ids = [pk for pk, _, _ in portfolios]

        def compute(parameters: dict[str, Any]) -> dict[str, Any]:
            report = performance.position_performance(
                portfolio_ids=ids,
                asset=asset,
                currency=parameters.get("currency") or client.base_currency,
                start=parameters.get("start"),
                end=parameters["end"],
            )
            return _render(report, ClientPositionPerformanceSerializer, client=client.pk, portfolios=ids)

        return self.respond(scope=f"client:{client.pk}:asset:{asset.pk}", versions=repr(portfolios), compute=compute)


__all__ = [
    "ClientPerformanceView",
    "ClientPositionPerformanceView",
    "PortfolioPerformanceView",
    "PortfolioPositionPerformanceView",
]
