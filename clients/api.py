from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers
from rest_framework.validators import UniqueValidator

from accounts.services import CACHE_NAMESPACE as USERS_CACHE_NAMESPACE
from portfolio_site.api.fields import ActorContextMixin, CurrencyField, LowercaseEmailField
from portfolio_site.api.viewsets import ScopedModelViewSet

from . import services
from .filters import ClientFilterSet, visible_clients
from .models import Client, visibility_key


@extend_schema_field(OpenApiTypes.INT)
class VisibleClientField(serializers.PrimaryKeyRelatedField):
    """A client id that must name a client the caller may see (others read as "does not exist")."""

    def get_queryset(self) -> Any:
        return visible_clients(self.context.get("request"))


@extend_schema_field(OpenApiTypes.INT)
class AdvisorField(serializers.PrimaryKeyRelatedField):
    """A user the caller may make a client's advisor (for an advisor, only themselves): anyone else reads as
    "does not exist", and the browsable API's form lists no other staff."""

    def get_queryset(self) -> Any:
        request = self.context.get("request")
        return services.advisor_choices(getattr(request, "user", None))


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
            "notes",
            "created_at",
            "updated_at",
        ]

    def create(self, validated_data: dict[str, Any]) -> Client:
        return services.client_create(actor=self.actor, **validated_data)

    def update(self, instance: Client, validated_data: dict[str, Any]) -> Client:
        return services.client_update(actor=self.actor, client=instance, **validated_data)


class ClientViewSet(ScopedModelViewSet):
    """Clients the caller may see: all of them for Operations and Auditors, their own for an advisor."""

    queryset = Client.objects.select_related("advisor")
    serializer_class = ClientSerializer
    filterset_class = ClientFilterSet
    ordering_fields = ["name", "email", "created_at", "updated_at"]
    ordering = ["name", "id"]
    cache_namespace = services.CACHE_NAMESPACE
    cache_depends_on = (USERS_CACHE_NAMESPACE,)

    def cache_scope(self) -> str:
        return visibility_key(self.request.user)

    def perform_destroy(self, instance: Client) -> None:
        services.client_delete(actor=self.request.user, client=instance)
