from decimal import Decimal
from typing import Any

from django.db.models import OuterRef, Subquery
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response

from clients.api import PortfolioPlacementMixin, VisibleClientField, VisiblePortfolioField
from clients.filters import visible_clients, visible_portfolios
from portfolio_site.api.fields import ActorContextMixin, CurrencyField, PlainDecimalField, must_be_positive
from portfolio_site.api.lean import LeanListSerializer
from portfolio_site.api.pagination import LargeListPagination
from portfolio_site.api.viewsets import LeanListMixin, ScopedReadCreateViewSet
from portfolio_site.idempotency.api import idempotent
from portfolio_site.models import NOTES_MAX_LENGTH
from portfolio_site.money import AMOUNT_DIGITS, AMOUNT_PLACES

from . import services
from .filters import TransactionFilterSet
from .models import Transaction
from .selectors import cash_on_hold, client_balances, portfolio_balances


def transactions() -> Any:
    """Transactions as the API shows them: each with the id of the reversal that cancels it, if any.

    A subquery rather than a join to the reversal: a count of the list then reads no second ledger (the join stays in
    every query of the queryset, counts included, and keeps PostgreSQL from counting from an index alone)."""
    reversal = Transaction.objects.filter(reverses=OuterRef("pk")).order_by().values("pk")
    return Transaction.objects.annotate(reversed_by=Subquery(reversal))


class TransactionSerializer(serializers.ModelSerializer):
    reversed_by = serializers.IntegerField(
        read_only=True, allow_null=True, help_text="Id of the reversal that cancels this transaction, if any."
    )

    class Meta:
        model = Transaction
        fields = [
            "id",
            "client",
            "portfolio",
            "kind",
            "amount",
            "currency",
            "date",
            "notes",
            "reference",
            "created_by",
            "reverses",
            "reversed_by",
            "counterpart",
            "created_at",
        ]
        read_only_fields = fields
        # A page of a long ledger: every row through one compiled function, not DRF's per-field machinery.
        list_serializer_class = LeanListSerializer


class TransactionCreateSerializer(ActorContextMixin, PortfolioPlacementMixin, serializers.Serializer):
    portfolio = VisiblePortfolioField(required=False, help_text="Id of the portfolio the cash moves in.")
    client = VisibleClientField(
        required=False,
        help_text="Id of the client, instead of `portfolio` when the client has a single portfolio; if both are "
        "given they must agree.",
    )
    kind = serializers.ChoiceField(
        choices=[(k.value, k.label) for k in Transaction.DIRECT],
        help_text="Deposits and withdrawals are the portfolio's external flows; interest, fees, taxes and tax refunds "
        "are income and costs inside it (they count in its returns). Trades, transfers and dividends post their own "
        "cash.",
    )
    amount = PlainDecimalField(max_digits=AMOUNT_DIGITS, decimal_places=AMOUNT_PLACES, validators=[must_be_positive])
    currency = CurrencyField()
    date = serializers.DateField(help_text="Value date.")
    notes = serializers.CharField(required=False, allow_blank=True, default="", max_length=NOTES_MAX_LENGTH)
    reference = serializers.CharField(
        required=False,
        allow_null=True,
        max_length=100,
        default=None,
        help_text="External id; posting the same reference again returns the first posting (200).",
    )


class ReverseSerializer(serializers.Serializer):
    notes = serializers.CharField(required=False, allow_blank=True, default="", max_length=NOTES_MAX_LENGTH)


class TransactionViewSet(LeanListMixin, ScopedReadCreateViewSet):
    """Cash movements. Posted once and never edited: a correction is a reversal (`POST …/{id}/reverse/`).

    Deposits, withdrawals, interest, fees, taxes and tax refunds are posted here; buys and sells are posted by
    their allocations, dividends by their dividends.
    """

    queryset = transactions()
    serializer_class = TransactionSerializer
    filterset_class = TransactionFilterSet
    ordering_fields = ["date", "amount", "created_at", "id"]
    ordering = ["-date", "-id"]
    # A ledger grows to millions of rows: page numbers by default, cursor pages (`?cursor=`) however deep.
    pagination_class = LargeListPagination

    def get_serializer_class(self) -> type[serializers.BaseSerializer]:
        return TransactionCreateSerializer if self.action == "create" else TransactionSerializer

    def _output(self, transaction: Transaction, status_code: int) -> Response:
        fresh = self.get_queryset().get(pk=transaction.pk)
        return Response(TransactionSerializer(fresh, context=self.get_serializer_context()).data, status=status_code)

    @extend_schema(
        request=TransactionCreateSerializer,
        responses={201: TransactionSerializer, 200: TransactionSerializer},
        description="Posts a deposit, withdrawal, interest, fee, tax or tax refund in a portfolio (201). An outflow "
        "(withdrawal, fee, tax) larger than the portfolio's cash is refused with 409, as is any posting in a closed "
        "portfolio. Replaying a reference returns the original "
        "posting (200).",
    )
    @idempotent
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        tx, created = services.transaction_post(actor=request.user, portfolio_id=data.pop("portfolio").pk, **data)
        return self._output(tx, status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(request=ReverseSerializer, responses={201: TransactionSerializer})
    @action(detail=True, methods=["post"])
    def reverse(self, request: Request, pk: str | None = None) -> Response:
        """Posts the reversal of a directly posted movement; 409 if already reversed, if it would overdraw, or if
        it is a trade's or a dividend's cash (change the trade or the dividend instead)."""
        serializer = ReverseSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        reversal = services.transaction_reverse(
            actor=request.user, transaction=self.get_object(), notes=serializer.validated_data["notes"]
        )
        return self._output(reversal, status.HTTP_201_CREATED)


class BalanceSerializer(serializers.Serializer):
    currency = serializers.CharField()
    amount = PlainDecimalField(max_digits=AMOUNT_DIGITS + 4, decimal_places=AMOUNT_PLACES)
    on_hold = PlainDecimalField(
        max_digits=AMOUNT_DIGITS + 4,
        decimal_places=AMOUNT_PLACES,
        help_text="Cash on hold now (the active holds' total, e.g. for open orders), whatever `as_of`.",
    )
    available = PlainDecimalField(
        max_digits=AMOUNT_DIGITS + 4,
        decimal_places=AMOUNT_PLACES,
        help_text="`amount` less `on_hold`.",
    )


def balance_rows(balances: dict[str, Decimal], on_hold: dict[str, Decimal]) -> list[dict[str, Any]]:
    """One row per currency with a balance or a hold: the ledger balance, what is on hold and the difference."""
    zero = Decimal("0.0000")
    return [
        {
            "currency": currency,
            "amount": balances.get(currency, zero),
            "on_hold": on_hold.get(currency, zero),
            "available": balances.get(currency, zero) - on_hold.get(currency, zero),
        }
        for currency in sorted(balances.keys() | on_hold.keys())
    ]


AS_OF_HELP = (
    "Balances at the end of this day (a reversal counts from the date of what it reverses); today's when absent."
)


class AsOfSerializer(serializers.Serializer):
    as_of = serializers.DateField(required=False, help_text=AS_OF_HELP)


AS_OF = OpenApiParameter("as_of", OpenApiTypes.DATE, description=AS_OF_HELP)


def as_of(request: Request) -> Any:
    """The `as_of` query parameter, validated (400 naming it when it is not a date)."""
    serializer = AsOfSerializer(data=request.query_params)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data.get("as_of")


class ClientBalancesView(GenericAPIView):
    """A client's cash balance per currency (all its portfolios together), derived from the ledger."""

    queryset = Transaction.objects.all()  # for the permission check: reading balances needs view_transaction

    @extend_schema(
        parameters=[AS_OF],
        responses=inline_serializer(
            "ClientBalances", {"client": serializers.IntegerField(), "balances": BalanceSerializer(many=True)}
        ),
    )
    def get(self, request: Request, pk: int) -> Response:
        client = get_object_or_404(visible_clients(request), pk=pk)
        balances = client_balances(client_id=client.pk, as_of=as_of(request))
        rows = balance_rows(balances, cash_on_hold(client_id=client.pk))
        return Response({"client": client.pk, "balances": BalanceSerializer(rows, many=True).data})


PORTFOLIO_ID = OpenApiParameter("id", int, OpenApiParameter.PATH, description="The portfolio's id.")


class PortfolioBalancesView(GenericAPIView):
    """A portfolio's cash balance per currency, derived from the ledger."""

    queryset = Transaction.objects.all()  # for the permission check: reading balances needs view_transaction

    @extend_schema(
        parameters=[PORTFOLIO_ID, AS_OF],
        responses=inline_serializer(
            "PortfolioBalances",
            {
                "portfolio": serializers.IntegerField(),
                "client": serializers.IntegerField(),
                "balances": BalanceSerializer(many=True),
            },
        ),
    )
    def get(self, request: Request, pk: int) -> Response:
        portfolio = get_object_or_404(visible_portfolios(request), pk=pk)
        balances = portfolio_balances(portfolio_id=portfolio.pk, as_of=as_of(request))
        rows = balance_rows(balances, cash_on_hold(portfolio_id=portfolio.pk))
        return Response(
            {
                "portfolio": portfolio.pk,
                "client": portfolio.client_id,
                "balances": BalanceSerializer(rows, many=True).data,
            }
        )


class CashTransferSerializer(serializers.Serializer):
    to_portfolio = VisiblePortfolioField(help_text="Id of another portfolio of the same client.")
    amount = PlainDecimalField(max_digits=AMOUNT_DIGITS, decimal_places=AMOUNT_PLACES, validators=[must_be_positive])
    currency = CurrencyField()
    date = serializers.DateField(help_text="Value date of both legs.")
    notes = serializers.CharField(required=False, allow_blank=True, default="", max_length=NOTES_MAX_LENGTH)


class CashTransferResultSerializer(serializers.Serializer):
    outgoing = TransactionSerializer(help_text="The transfer out of this portfolio.")
    incoming = TransactionSerializer(
        help_text="The transfer into the other portfolio; its `counterpart` is the outgoing leg."
    )


class CashTransferView(GenericAPIView):
    """Moves cash from this portfolio to another portfolio of the same client: both legs, posted together."""

    queryset = Transaction.objects.all()  # for the permission check: a transfer needs add_transaction
    serializer_class = CashTransferSerializer

    @extend_schema(
        parameters=[PORTFOLIO_ID],
        request=CashTransferSerializer,
        responses={201: CashTransferResultSerializer},
        description="Posts a transfer out of this portfolio and a transfer into `to_portfolio` (201). 400 if the "
        "portfolios are the same or belong to different clients; 409 if this portfolio lacks the cash or either "
        "portfolio is closed. Reversing either leg (`POST /transactions/{id}/reverse/`) reverses both.",
    )
    @idempotent
    def post(self, request: Request, pk: int) -> Response:
        source = get_object_or_404(visible_portfolios(request), pk=pk)
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        out, into = services.cash_transfer(
            actor=request.user, from_portfolio_id=source.pk, to_portfolio_id=data.pop("to_portfolio").pk, **data
        )
        legs = transactions().in_bulk([out.pk, into.pk])
        result = CashTransferResultSerializer({"outgoing": legs[out.pk], "incoming": legs[into.pk]})
        return Response(result.data, status=status.HTTP_201_CREATED)
