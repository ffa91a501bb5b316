"""The income report's endpoints: a portfolio's, and a client's over all its portfolios (holdings.income).

Cached as the other reports are (`CachedReportView`): by the caller's visibility, the portfolios' data versions
(every dividend and ledger posting moves them), the rates and the parameters.
"""

from typing import Any

from django.shortcuts import get_object_or_404
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from clients.filters import visible_clients
from clients.models import Client
from portfolio_site.api.fields import CurrencyField
from portfolio_site.api.schema import VALIDATION_ERROR

from .income import IncomeReport, income
from .valuation_api import CachedReportView, PresentedDecimalField


def _amount(help_text: str) -> PresentedDecimalField:
    return PresentedDecimalField(
        valuation_currency=True, allow_null=False, help_text=f"{help_text} In the report's currency."
    )


class AmountsSerializer(serializers.Serializer):
    gross = _amount("Before withholding tax.")
    tax = _amount("Withheld at source.")
    net = _amount("Received: gross less tax.")


class AssetIncomeSerializer(AmountsSerializer):
    asset = serializers.IntegerField(source="asset_id")
    ticker = serializers.CharField()
    name = serializers.CharField()
    payments = serializers.IntegerField(help_text="Dividends paid over the period.")


class MonthIncomeSerializer(AmountsSerializer):
    month = serializers.CharField(help_text="YYYY-MM, by payment day.")
    dividends = _amount("Dividends received (net).")
    interest = _amount("Interest received.")


class MissingPaymentSerializer(serializers.Serializer):
    kind = serializers.CharField(help_text="dividend or interest.")
    date = serializers.DateField(help_text="The payment day, with no rate to the report's currency on or before it.")
    currency = serializers.CharField(help_text="The payment's currency.")


class IncomeSerializer(serializers.Serializer):
    currency = serializers.CharField(help_text="The report's currency.")
    start = serializers.DateField(allow_null=True, help_text="From the beginning of this day; all history when null.")
    end = serializers.DateField(help_text="To the end of this day.")
    totals = AmountsSerializer(help_text="Dividends and interest together.")
    dividends = AmountsSerializer(help_text="Dividends, by pay date.")
    interest = AmountsSerializer(help_text="Interest, tied to no asset (gross = net).")
    by_asset = AssetIncomeSerializer(many=True, help_text="Dividends per asset, by ticker.")
    by_month = MonthIncomeSerializer(many=True, help_text="Months with any income, in order.")
    missing_fx = MissingPaymentSerializer(
        many=True, help_text="Payments left out of every figure: no rate to the report's currency (never taken as 1)."
    )


class PortfolioIncomeSerializer(IncomeSerializer):
    portfolio = serializers.IntegerField()
    client = serializers.IntegerField()


class ClientIncomeSerializer(IncomeSerializer):
    client = serializers.IntegerField()
    portfolios = serializers.ListField(child=serializers.IntegerField())


class IncomeParametersSerializer(serializers.Serializer):
    start = serializers.DateField(required=False, help_text="From the beginning of this day; all history by default.")
    end = serializers.DateField(required=False, help_text="To the end of this day; today by default.")
    currency = CurrencyField(required=False, help_text="ISO 4217 code to report in; the base currency by default.")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs.setdefault("end", timezone.localdate())
        if attrs.get("start") and attrs["start"] > attrs["end"]:
            raise serializers.ValidationError({"start": "The start is after the end."})
        return attrs


PARAMETERS = [
    OpenApiParameter("id", int, OpenApiParameter.PATH),
    OpenApiParameter("start", OpenApiTypes.DATE, description="From the beginning of this day; all history by default."),
    OpenApiParameter("end", OpenApiTypes.DATE, description="To the end of this day; today by default."),
    OpenApiParameter("currency", OpenApiTypes.STR, description="ISO 4217 code; the base currency by default."),
]
DESCRIPTION = (
    "Income received from `start` to `end`: dividends on their pay dates (gross, withholding tax, net) by asset, "
    "and interest (tied to no asset), together by month, each payment converted at its day's rate (the latest "
    "published on or before it; inverse or crossed through the pivot). A payment without a rate is listed in "
    "`missing_fx` and left out of every figure. Fees and taxes posted on their own are costs, not income."
)


class _IncomeView(CachedReportView):
    parameters_serializer = IncomeParametersSerializer
    cache_prefix = "income"

    @staticmethod
    def render(report: IncomeReport, output: type[serializers.Serializer], **ids: Any) -> dict[str, Any]:
        return dict(output({**vars(report), **ids}, context={"currency": report.currency}).data)


class PortfolioIncomeView(_IncomeView):
    """A portfolio's income over a period."""

    @extend_schema(
        parameters=PARAMETERS,
        responses={200: PortfolioIncomeSerializer, 400: VALIDATION_ERROR.ref},
        description=DESCRIPTION + " In the portfolio's base currency by default.",
    )
    def get(self, request: Request, pk: int) -> Response:
        portfolio = self.visible_portfolio(pk)

        def compute(parameters: dict[str, Any]) -> dict[str, Any]:
            report = income(
                portfolio_ids=[portfolio.pk],
                currency=parameters.get("currency") or portfolio.base_currency,
                start=parameters.get("start"),
                end=parameters["end"],
            )
            return self.render(report, PortfolioIncomeSerializer, portfolio=portfolio.pk, client=portfolio.client_id)

        return self.respond(scope=f"portfolio:{portfolio.pk}", versions=str(portfolio.data_version), compute=compute)


class ClientIncomeView(_IncomeView):
    """A client's income over all its portfolios."""

    @extend_schema(
        parameters=PARAMETERS,
        responses={200: ClientIncomeSerializer, 400: VALIDATION_ERROR.ref},
        description=DESCRIPTION + " All the client's portfolios, in its base currency by default.",
    )
    def get(self, request: Request, pk: int) -> Response:
        client: Client = get_object_or_404(visible_clients(request), pk=pk)
        portfolios = list(client.portfolios.order_by("pk").values_list("pk", "data_version"))
        ids = [portfolio_id for portfolio_id, _ in portfolios]

        def compute(parameters: dict[str, Any]) -> dict[str, Any]:
            report = income(
                portfolio_ids=ids,
                currency=parameters.get("currency") or client.base_currency,
                start=parameters.get("start"),
                end=parameters["end"],
            )
            return self.render(report, ClientIncomeSerializer, client=client.pk, portfolios=ids)

        return self.respond(scope=f"client:{client.pk}", versions=repr(portfolios), compute=compute)
