from typing import Any

from django.db.models import Prefetch
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.validators import UniqueValidator

from accounts.services import CACHE_NAMESPACE as USERS_CACHE_NAMESPACE
from portfolio_site.api.fields import ActorContextMixin, CurrencyField, LowercaseEmailField
from portfolio_site.api.viewsets import ScopedModelViewSet

from . import services
from .filters import ClientFilterSet, PortfolioFilterSet, visible_clients, visible_portfolios
from .models import Client, Portfolio


@extend_schema_field(OpenApiTypes.INT)
class VisibleClientField(serializers.PrimaryKeyRelatedField):
    """A client id that must name a client the caller may see (others read as "does not exist")."""

    def get_queryset(self) -> Any:
        return visible_clients(self.context.get("request"))


@extend_schema_field(OpenApiTypes.INT)
class VisiblePortfolioField(serializers.PrimaryKeyRelatedField):
    """A portfolio id that must name a portfolio of a client the caller may see (others read as "does not
    exist", exactly like an unknown id)."""

    def get_queryset(self) -> Any:
        return visible_portfolios(self.context.get("request"))


class PortfolioPlacementMixin:
    """For serializers of a client's movements (cash, units), which belong to a portfolio.

    A request names its `portfolio`; or, as API callers did before clients had several portfolios, only its
    `client`, meaning that client's single portfolio (a 400 on `portfolio` when it has several or none). Given
    both, they must agree. `client` never reaches the service: the portfolio decides it.
    """

    instance: Any

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        attrs = super().validate(attrs)  # type: ignore[misc]
        client = attrs.pop("client", None)
        portfolio = attrs.get("portfolio")
        if portfolio is not None:
            if client is not None and portfolio.client_id != client.pk:
                raise serializers.ValidationError({"portfolio": ["This portfolio belongs to another client."]})
            return attrs
        if client is None:
            if self.instance is None:
                raise serializers.ValidationError(
                    {"portfolio": ["Name the portfolio, or a client that has a single portfolio."]}
                )
            return attrs
        if self.instance is not None and self.instance.client_id == client.pk:
            # Repeating the movement's own client (a PUT of what a GET returned) leaves it where it is, even
            # when the client has several portfolios.
            return attrs
        attrs["portfolio"] = services.client_single_portfolio(client=client)
        return attrs


@extend_schema_field(OpenApiTypes.INT)
class AdvisorField(serializers.PrimaryKeyRelatedField):
    """A user the caller may make a client's advisor (for an advisor, only themselves): anyone else reads as
    "does not exist", and the browsable API's form lists no other staff."""

    def get_queryset(self) -> Any:
        request = self.context.get("request")
        return services.advisor_choices(getattr(request, "user", None))


# --- Portfolios ----------------------------------------------------------------------------------------


class PortfolioSerializer(ActorContextMixin, serializers.ModelSerializer):
    client = VisibleClientField(help_text="Id of the client the portfolio belongs to; it never changes.")
    client_name: serializers.Field = serializers.StringRelatedField(source="client", read_only=True)
    base_currency = CurrencyField(required=False, help_text="ISO 4217 code; the client's base currency if omitted.")
    opened_on = serializers.DateField(required=False, help_text="Today if omitted.")
    is_open = serializers.BooleanField(read_only=True, help_text="False once `closed_on` is set.")

    class Meta:
        model = Portfolio
        fields = [
            "id",
            "client",
            "client_name",
            "name",
            "kind",
            "custodian",
            "account_number",
            "base_currency",
            "opened_on",
            "closed_on",
            "is_open",
            "notes",
            "created_at",
            "updated_at",
        ]
        # Uniqueness (a name per client whatever its case, an account number per custodian) is the service's
        # full_clean() and the database's, which see the trimmed values.
        validators: list[Any] = []

    def create(self, validated_data: dict[str, Any]) -> Portfolio:
        return services.portfolio_create(actor=self.actor, **validated_data)

    def update(self, instance: Portfolio, validated_data: dict[str, Any]) -> Portfolio:
        return services.portfolio_update(actor=self.actor, portfolio=instance, **validated_data)


class PortfolioViewSet(ScopedModelViewSet):
    """Clients' portfolios (accounts), each with its own cash and holdings: whoever sees a client sees its
    portfolios. DELETE only a portfolio that never held anything (else 409); close one with `closed_on`, after
    which it accepts no new movements."""

    queryset = Portfolio.objects.select_related("client")
    serializer_class = PortfolioSerializer
    filterset_class = PortfolioFilterSet
    ordering_fields = ["name", "kind", "custodian", "opened_on", "closed_on", "created_at", "updated_at"]
    ordering = ["client__name", "client_id", "name", "id"]
    # Portfolio writes go through the clients services, which bump this namespace: a client's detail lists
    # its portfolios, and a portfolio shows its client's name.
    cache_namespace = services.CACHE_NAMESPACE

    def perform_destroy(self, instance: Portfolio) -> None:
        services.portfolio_delete(actor=self.request.user, portfolio=instance)


# --- Clients -------------------------------------------------------------------------------------------


class ClientPortfolioSerializer(serializers.ModelSerializer):
    """A portfolio as its client shows it (id and name), and as a new client's request opens it."""

    base_currency = CurrencyField(
        required=False, write_only=True, help_text="ISO 4217 code; the client's base currency if omitted."
    )

    class Meta:
        model = Portfolio
        fields = ["id", "name", "kind", "custodian", "account_number", "base_currency", "opened_on"]
        extra_kwargs = {
            "kind": {"write_only": True},
            "custodian": {"write_only": True},
            "account_number": {"write_only": True},
            "opened_on": {"write_only": True, "required": False, "help_text": "Today if omitted."},
        }
        validators: list[Any] = []


class ClientSerializer(ActorContextMixin, serializers.ModelSerializer):
    email = LowercaseEmailField(
        validators=[
            UniqueValidator(
                Client.objects.all(), lookup="iexact", message="A client with this email address already exists."
            )
        ]
    )
    advisor = AdvisorField(
        required=False,
        help_text="User id of the responsible staff member; an advisor creating a client defaults to themselves.",
    )
    advisor_name: serializers.Field = serializers.StringRelatedField(source="advisor", read_only=True)
    base_currency = CurrencyField()
    portfolios = ClientPortfolioSerializer(
        many=True,
        required=False,
        help_text="The client's portfolios. On create only: the portfolios to open (one named Main, in the base "
        "currency, if omitted); afterwards they are managed through /api/v1/portfolios/.",
    )

    class Meta:
        model = Client
        fields = [
            "id",
            "name",
            "email",
            "phone",
            "is_active",
            "advisor",
            "advisor_name",
            "base_currency",
            "portfolios",
            "notes",
            "created_at",
            "updated_at",
        ]

    def create(self, validated_data: dict[str, Any]) -> Client:
        portfolios = validated_data.pop("portfolios", None)
        if portfolios is not None:
            portfolios = [dict(fields) for fields in portfolios]
        return services.client_create(actor=self.actor, portfolios=portfolios, **validated_data)

    def validate_portfolios(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.instance is not None:
            # Ignoring them silently would let a caller believe a portfolio was opened or renamed.
            raise serializers.ValidationError(
                "An existing client's portfolios are changed through /api/v1/portfolios/."
            )
        return value

    def update(self, instance: Client, validated_data: dict[str, Any]) -> Client:
        return services.client_update(actor=self.actor, client=instance, **validated_data)


class ClientViewSet(ScopedModelViewSet):
    """Clients the caller may see: all of them for Operations and Auditors, their own for an advisor."""

    queryset = Client.objects.select_related("advisor").prefetch_related(
        # Explicit order: the model's default orders by client, which would join the clients table again.
        Prefetch("portfolios", queryset=Portfolio.objects.order_by("name", "id"))
    )
    serializer_class = ClientSerializer
    filterset_class = ClientFilterSet
    ordering_fields = ["name", "email", "created_at", "updated_at"]
    ordering = ["name", "id"]
    cache_namespace = services.CACHE_NAMESPACE
    cache_depends_on = (USERS_CACHE_NAMESPACE,)

    def perform_destroy(self, instance: Client) -> None:
        services.client_delete(actor=self.request.user, client=instance)
