"""The positions and valuation doors, for a portfolio and for a client (all its portfolios).

Thin: check visibility, read the parameters, call `holdings.valuation`, round and serialize. Responses are cached
per caller's visibility, object, parameters and the data versions of the portfolios valued (bumped by every change
to their movements and to the prices of what they hold), plus the rates' and assets' namespaces.
"""

import functools
import hashlib
from collections.abc import Callable, Mapping
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from django.conf import settings
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.settings import api_settings

from clients.filters import visible_clients
from clients.models import Client, Portfolio
from clients.selectors import visible_portfolio_header
from portfolio_site.api.fields import CurrencyField
from portfolio_site.api.lean import represent
from portfolio_site.api.rendered import RenderedJSONResponse, render_json
from portfolio_site.api.schema import VALIDATION_ERROR
from portfolio_site.cache import versioned_get, versioned_set
from portfolio_site.money import QUANTITY_PLACES, QUANTITY_QUANTUM, minor_unit, present_amount

from . import valuation
from .models import Allocation
from .selectors import units_on_hold
from .services import ASSETS_CACHE, FX_RATES_CACHE

# What rate writes must bump (`portfolio_site.cache.invalidate_namespace`): a rate changes the valuation of every
# portfolio that holds anything in its currencies, which no data version tracks.
WEIGHT_PLACES = 6


class PresentedDecimalField(serializers.DecimalField):
    """A computed figure, rounded half-even once, here: an amount to its currency's minor unit (the object's own
    `currency`, or with `valuation_currency` the valuation's), anything else to `places`. A string in JSON."""

    def __init__(self, *, places: int | None = None, valuation_currency: bool = False, **kwargs: Any) -> None:
        self.places, self.valuation_currency = places, valuation_currency
        kwargs.setdefault("allow_null", True)
        super().__init__(max_digits=None, decimal_places=None, read_only=True, **kwargs)

    def get_attribute(self, instance: Any) -> Any:
        value = super().get_attribute(instance)
        return None if value is None else self._present(value, instance, self.context)

    def lean_represent(self, context: dict[str, Any]) -> Callable[[Any], str | None]:
        """What `to_representation(get_attribute(row))` gives, for `portfolio_site.api.lean`: the figure rounded and
        written as its plain string by one `format()` (half-even under lean's context), the places found once per
        field (or per currency) rather than per value. Checked here, not assumed: DRF writes such a figure as its
        plain string (decimals as strings, no places of the field's own, no normalizing or locale)."""
        plain = self.decimal_places is None and not self.normalize_output and not self.localize
        if not (plain and getattr(self, "coerce_to_string", api_settings.COERCE_DECIMAL_TO_STRING)):
            raise TypeError("A presented figure is written as its plain string: no places, normalizing or locale.")
        (attr,) = self.source_attrs
        if self.places is not None or self.valuation_currency:
            spec = self._spec(context["currency"] if self.valuation_currency else "")

            def fixed(instance: Any) -> str | None:
                value = getattr(instance, attr)
                return None if value is None else format(value, spec)

            return fixed
        specs: dict[str, str] = {}

        def per_currency(instance: Any) -> str | None:
            value = getattr(instance, attr)
            if value is None:
                return None
            code = instance.currency
            spec = specs.get(code)
            if spec is None:
                spec = specs[code] = self._spec(code)
            return format(value, spec)

        return per_currency

    def _present(self, value: Decimal, instance: Any, context: Mapping[str, Any]) -> Decimal:
        if self.places is not None:
            return value.quantize(Decimal(1).scaleb(-self.places), rounding=ROUND_HALF_EVEN)
        currency = context["currency"] if self.valuation_currency else instance.currency
        return present_amount(value, currency)

    def _spec(self, currency: str) -> str:
        """The format of what `_present` rounds to: `places`, or the currency's minor unit (`present_amount`'s)."""
        return f".{self.places if self.places is not None else minor_unit(currency)}f"


def _quantity(**kwargs: Any) -> PresentedDecimalField:
    return PresentedDecimalField(places=QUANTITY_PLACES, **kwargs)


def _amount(help_text: str) -> PresentedDecimalField:
    return PresentedDecimalField(help_text=f"{help_text} In the asset's currency.")


def _value(help_text: str) -> PresentedDecimalField:
    return PresentedDecimalField(valuation_currency=True, help_text=f"{help_text} In the valuation currency.")


class AssetRefMixin(serializers.Serializer):
    asset = serializers.IntegerField(source="asset_id")
    ticker = serializers.CharField()
    name = serializers.CharField()
    currency = serializers.CharField(help_text="The asset's currency.")


class PositionSerializer(AssetRefMixin):
    quantity = _quantity(allow_null=False)
    cost_basis = PresentedDecimalField(source="cost", allow_null=False, help_text="Cost of the units held.")
    average_cost = _quantity(help_text="Cost per unit held; null when none are held.")
    realized_gain = PresentedDecimalField(allow_null=False, help_text="Realized by sells to date, less fees and taxes.")
    last_price = _quantity(help_text="Latest close on or before `as_of`; null when there is none.")
    last_price_date = serializers.DateField(allow_null=True)
    stale = serializers.BooleanField(help_text="The last price is older than the stale limit.")
    market_value = _amount("Quantity x last price; null when unpriced.")
    unrealized_gain = _amount("Market value less cost basis; null when unpriced.")
    market_value_base = PresentedDecimalField(
        source="market_value_value",
        valuation_currency=True,
        help_text="Market value at the `as_of` rate, in the valuation (base) currency; null when left out.",
    )
    weight = PresentedDecimalField(
        places=WEIGHT_PLACES,
        help_text="Share of the total value (positions and cash, in the valuation currency), as a fraction; null "
        "when the position is left out of the totals.",
    )


class ValuedPositionSerializer(AssetRefMixin):
    quantity = _quantity(allow_null=False)
    last_price = _quantity(help_text="Latest close on or before `as_of`, in the asset's currency.")
    last_price_date = serializers.DateField(allow_null=True)
    stale = serializers.BooleanField(help_text="The last price is older than the stale limit.")
    fx_rate = _quantity(help_text="Asset currency to valuation currency at `as_of`.")
    market_value = PresentedDecimalField(
        source="market_value_value", valuation_currency=True, help_text="P1 x q x FX1."
    )
    cost = PresentedDecimalField(
        source="cost_value", valuation_currency=True, help_text="Cost basis, each trade at its own day's rate."
    )
    unrealized_gain = PresentedDecimalField(
        source="unrealized_gain_value", valuation_currency=True, help_text="Price effect plus currency effect."
    )
    price_effect = _value("(P1 - P0) x q x FX1, P0 the average cost.")
    currency_effect = _value("P0 x q x (FX1 - FX0), FX0 the trades' average rate.")
    realized_gain = PresentedDecimalField(
        source="realized_gain_value",
        valuation_currency=True,
        help_text="Sells' proceeds at the sell day's rate less their cost at the trades' rates.",
    )
    weight = PresentedDecimalField(places=WEIGHT_PLACES, help_text="Share of the total value, as a fraction.")


class UnpricedSerializer(AssetRefMixin):
    quantity = _quantity(allow_null=False)


class MissingFxSerializer(serializers.Serializer):
    base = serializers.CharField()
    quote = serializers.CharField()
    on = serializers.DateField()
    asset = serializers.IntegerField(source="asset_id", allow_null=True, help_text="Null for cash.")


class CashSerializer(serializers.Serializer):
    currency = serializers.CharField()
    amount = PresentedDecimalField(allow_null=False, help_text="In its own currency.")
    fx_rate = _quantity(help_text="To the valuation currency at `as_of`; null when missing.")
    value = _value("Null when the rate is missing.")


class TotalsSerializer(serializers.Serializer):
    holdings = _value("Market value of the counted positions.")
    cash = _value("Cash whose rate was found.")
    total = _value("Holdings plus cash.")
    cost = _value("Cost of the counted positions.")
    unrealized_gain = _value("")
    price_effect = _value("")
    currency_effect = _value("")
    realized_gain = _value("")


class ReportSerializer(serializers.Serializer):
    as_of = serializers.DateField()
    currency = serializers.CharField(help_text="The valuation currency.")
    cost_method = serializers.ChoiceField(choices=valuation.COST_METHODS)
    unpriced = UnpricedSerializer(many=True, help_text="Held assets with no price on or before `as_of`.")
    missing_fx = MissingFxSerializer(many=True, help_text="Rates needed and not found.")
    warnings = serializers.ListField(child=serializers.CharField())


class PositionsSerializer(ReportSerializer):
    positions = PositionSerializer(many=True)


class HeldPositionSerializer(PositionSerializer):
    """What the positions endpoints answer per position: the position, and its units on hold (added by the view)."""

    units_on_hold = _quantity(allow_null=False, help_text="Units on hold now (e.g. for open orders), today's units.")
    units_available = _quantity(allow_null=False, help_text="`quantity` less `units_on_hold`.")


class HeldPositionsSerializer(ReportSerializer):
    positions = HeldPositionSerializer(many=True)


class ValuationSerializer(ReportSerializer):
    positions = ValuedPositionSerializer(many=True)
    cash = CashSerializer(many=True)
    totals = TotalsSerializer()


class PortfolioPositionsSerializer(PositionsSerializer):
    portfolio = serializers.IntegerField()
    client = serializers.IntegerField()


class ClientPositionsSerializer(PositionsSerializer):
    client = serializers.IntegerField()
    portfolios = serializers.ListField(child=serializers.IntegerField())


class PortfolioHeldPositionsSerializer(HeldPositionsSerializer):
    """The portfolio positions endpoint's answer: `PortfolioPositionsSerializer`'s, each position with its holds."""

    portfolio = serializers.IntegerField()
    client = serializers.IntegerField()


class ClientHeldPositionsSerializer(HeldPositionsSerializer):
    """The client positions endpoint's answer: `ClientPositionsSerializer`'s, each position with its holds."""

    client = serializers.IntegerField()
    portfolios = serializers.ListField(child=serializers.IntegerField())


class PortfolioValuationSerializer(ValuationSerializer):
    portfolio = serializers.IntegerField()
    client = serializers.IntegerField()


class ClientValuationSerializer(ValuationSerializer):
    client = serializers.IntegerField()
    portfolios = serializers.ListField(child=serializers.IntegerField())


class ParametersSerializer(serializers.Serializer):
    as_of = serializers.DateField(required=False, help_text="At the end of this day; today when absent.")
    cost_method = serializers.ChoiceField(
        choices=valuation.COST_METHODS,
        default=valuation.AVERAGE,
        help_text="`average` (moving average, the default) or `fifo` (first in, first out, by lots).",
    )
    currency = CurrencyField(required=False, help_text="ISO 4217 code to value in; the base currency by default.")


def _parameters(*names: str) -> list[OpenApiParameter]:
    fields = ParametersSerializer().fields
    types = {"as_of": OpenApiTypes.DATE, "cost_method": OpenApiTypes.STR, "currency": OpenApiTypes.STR}
    return [
        OpenApiParameter(
            name,
            types[name],
            description=str(fields[name].help_text),
            enum=list(valuation.COST_METHODS) if name == "cost_method" else None,
        )
        for name in names
    ]


ID = OpenApiParameter("id", int, OpenApiParameter.PATH)
ERRORS = {400: VALIDATION_ERROR.ref}


class CachedReportView(GenericAPIView):
    """A report computed from portfolios' history (valuations, performance), cached by everything that changes
    the answer: who asks (their visibility), what (the object and the parameters), and the state of what it reads
    (the portfolios' data versions and the `namespaces` of the reference data it uses). What is cached is the
    rendered JSON (`portfolio_site.api.rendered`): a hit is a cache read and the bytes written out."""

    queryset = Allocation.objects.all()  # for the permission check: these reports need view_allocation
    parameters_serializer: type[serializers.Serializer]
    cache_prefix: str
    namespaces: tuple[str, ...] = (FX_RATES_CACHE, ASSETS_CACHE)

    def visible_portfolio(self, pk: int) -> Portfolio:
        """The portfolio named in the URL if the caller sees it (404 otherwise, like an unknown one), with only
        what a report reads of it: the lookup is most of a cached answer's own work."""
        portfolio = visible_portfolio_header(self.request.user, pk)
        if portfolio is None:
            raise Http404
        return portfolio

    def parameters(self) -> dict[str, Any]:
        serializer = self.parameters_serializer(data=self.request.query_params)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)

    def key_settings(self) -> dict[str, Any]:
        """Settings the answer depends on, for the cache key."""
        return {}

    def request_key(self) -> str:
        """What the caller asked for, as the cache key names it: each parameter as given (every value of a repeated
        one), today's date (the defaults are relative to it) and `key_settings`. Not the validated parameters: a
        hit is served without validating them again, which cost a tenth of a cached answer. That is safe because
        validation depends on nothing else, and only an answer to valid parameters is ever stored."""
        query = self.request.query_params
        given = [(name, query.getlist(name)) for name in parameter_names(self.parameters_serializer) if name in query]
        return repr((given, timezone.localdate(), sorted(self.key_settings().items())))

    def respond(self, *, scope: str, versions: str, compute: Callable[[dict[str, Any]], dict[str, Any]]) -> Response:
        parts = [
            "json",  # what is cached: the rendered JSON (a key of its own, never mistaken for the data it was)
            type(self).__name__,
            Portfolio.objects.visibility_key(self.request.user),
            scope,
            versions,
            self.request_key(),
        ]
        key = f"{self.cache_prefix}:" + hashlib.sha256("\n".join(parts).encode()).hexdigest()
        content, read_as_of = versioned_get(key, self.namespaces)
        if not isinstance(content, bytes):
            content = render_json(compute(self.parameters()))
            versioned_set(key, content, read_as_of, timeout=settings.API_CACHE_SECONDS)
        return RenderedJSONResponse(content)


@functools.cache
def parameter_names(serializer: type[serializers.Serializer]) -> tuple[str, ...]:
    """The query parameters a serializer reads (its fields, built once rather than on every request)."""
    return tuple(serializer().fields)


class _ReportView(CachedReportView):
    parameters_serializer = ParametersSerializer
    cache_prefix = "valuation"
    takes_currency = False
    output: type[serializers.Serializer]

    def parameters(self) -> dict[str, Any]:
        data = super().parameters()
        data.setdefault("as_of", timezone.localdate())
        if not self.takes_currency:
            data.pop("currency", None)
        return data

    def key_settings(self) -> dict[str, Any]:
        return {"stale_price_days": settings.VALUATION_STALE_PRICE_DAYS}

    def held_units(self, **scope: int) -> dict[int, Decimal] | None:
        """Units on hold per asset, for the reports that show them (positions); None for the others."""
        return None

    def with_holds(self, rendered: dict[str, Any], held: dict[int, Decimal] | None) -> dict[str, Any]:
        return rendered

    def render(self, report: valuation.Valuation, **ids: Any) -> dict[str, Any]:
        # The serializer's own fields, run without DRF's per-value walk (hundreds of positions): the same data.
        return represent(self.output, self.report_fields(report, **ids), {"currency": report.currency})

    def report_fields(self, report: valuation.Valuation, **ids: Any) -> dict[str, Any]:
        """What `output` serializes."""
        return {
            "as_of": report.as_of,
            "currency": report.currency,
            "cost_method": report.cost_method,
            "positions": report.positions,
            "unpriced": report.unpriced,
            "missing_fx": report.missing_fx,
            "warnings": report.warnings,
            "cash": report.cash,
            "totals": report.totals,
            **ids,
        }


class _PortfolioReportView(_ReportView):
    def get(self, request: Request, pk: int) -> Response:
        portfolio = self.visible_portfolio(pk)
        held = self.held_units(portfolio_id=portfolio.pk)

        def compute(parameters: dict[str, Any]) -> dict[str, Any]:
            report = valuation.portfolio_valuation(portfolio=portfolio, **parameters)
            return self.with_holds(self.render(report, portfolio=portfolio.pk, client=portfolio.client_id), held)

        versions = f"{portfolio.data_version}:{held_key(held)}"
        return self.respond(scope=f"portfolio:{portfolio.pk}", versions=versions, compute=compute)


class _ClientReportView(_ReportView):
    def get(self, request: Request, pk: int) -> Response:
        client: Client = get_object_or_404(visible_clients(request), pk=pk)
        portfolios = list(client.portfolios.order_by("pk").values_list("pk", "data_version"))
        ids = [portfolio_id for portfolio_id, _ in portfolios]
        held = self.held_units(client_id=client.pk)

        def compute(parameters: dict[str, Any]) -> dict[str, Any]:
            report = valuation.client_valuation(client=client, portfolio_ids=ids, **parameters)
            return self.with_holds(self.render(report, client=client.pk, portfolios=ids), held)

        versions = f"{portfolios!r}:{held_key(held)}"
        return self.respond(scope=f"client:{client.pk}", versions=versions, compute=compute)


def held_key(held: dict[int, Decimal] | None) -> str:
    """The units on hold as part of a cache key: holds change without a new data version."""
    return "" if held is None else repr(sorted(held.items()))


def _quantity_text(value: Decimal) -> str:
    return f"{value.quantize(QUANTITY_QUANTUM, rounding=ROUND_HALF_EVEN):f}"


class _PositionsHoldsMixin:
    """Positions views: each position also says how many of its units are on hold now (`UnitHold`, in today's
    units) and how many are left. Read in one or two queries whatever the number of positions, and part of the
    cache key (a hold changes no data version)."""

    def held_units(self, **scope: int) -> dict[int, Decimal] | None:
        return units_on_hold(**scope)

    def with_holds(self, rendered: dict[str, Any], held: dict[int, Decimal] | None) -> dict[str, Any]:
        for row in rendered["positions"]:
            on_hold = (held or {}).get(row["asset"], Decimal(0))
            row["units_on_hold"] = _quantity_text(on_hold)
            row["units_available"] = _quantity_text(Decimal(row["quantity"]) - on_hold)
        return rendered


POSITIONS_DESCRIPTION = (
    "Per asset: quantity, cost basis and average cost (moving average, or FIFO lots with `cost_method=fifo`), "
    "realized gain to date, last price, market value and unrealized gain in the asset's currency, and the weight "
    "in the total value (cash included, in the base currency). Assets sold out show their realized gain at "
    "quantity 0. A held asset with no price, or a missing rate, is listed under `unpriced` / `missing_fx`, with "
    "null figures, never zero."
)
VALUATION_DESCRIPTION = (
    "Positions and cash per currency valued in `currency`: market value at the `as_of` rate, cost at each trade's "
    "own day's rate, the unrealized gain split into a price and a currency effect; totals of the positions and "
    "cash that could be valued. Unpriced assets and missing rates are listed and left out of the totals."
)


class PortfolioPositionsView(_PositionsHoldsMixin, _PortfolioReportView):
    """A portfolio's positions at the end of a day."""

    output = PortfolioPositionsSerializer

    @extend_schema(
        parameters=[ID, *_parameters("as_of", "cost_method")],
        responses={200: PortfolioHeldPositionsSerializer, **ERRORS},
        description=POSITIONS_DESCRIPTION,
    )
    def get(self, request: Request, pk: int) -> Response:
        return super().get(request, pk)


class PortfolioValuationView(_PortfolioReportView):
    """A portfolio's valuation at the end of a day."""

    output = PortfolioValuationSerializer
    takes_currency = True

    @extend_schema(
        parameters=[ID, *_parameters("as_of", "cost_method", "currency")],
        responses={200: PortfolioValuationSerializer, **ERRORS},
        description=VALUATION_DESCRIPTION + " In the portfolio's base currency by default.",
    )
    def get(self, request: Request, pk: int) -> Response:
        return super().get(request, pk)


class ClientPositionsView(_PositionsHoldsMixin, _ClientReportView):
    """A client's positions over all its portfolios at the end of a day."""

    output = ClientPositionsSerializer

    @extend_schema(
        parameters=[ID, *_parameters("as_of", "cost_method")],
        responses={200: ClientHeldPositionsSerializer, **ERRORS},
        description=POSITIONS_DESCRIPTION
        + " An asset held in several portfolios is one position: each portfolio's cost method is applied to its "
        "own movements, then the figures are summed. Weights are in the client's base currency.",
    )
    def get(self, request: Request, pk: int) -> Response:
        return super().get(request, pk)


class ClientValuationView(_ClientReportView):
    """A client's valuation over all its portfolios at the end of a day."""

    output = ClientValuationSerializer
    takes_currency = True

    @extend_schema(
        parameters=[ID, *_parameters("as_of", "cost_method", "currency")],
        responses={200: ClientValuationSerializer, **ERRORS},
        description=VALUATION_DESCRIPTION + " All the client's portfolios, in its base currency by default.",
    )
    def get(self, request: Request, pk: int) -> Response:
        return super().get(request, pk)
