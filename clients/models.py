from typing import Any, Self

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Lower

from accounts.roles import is_advisor, sees_all_clients
from portfolio_site.models import TimeStampedModel, notes_field
from portfolio_site.money import CurrencyField, currency_constraint

validate_phone = RegexValidator(
    r"^\+?[0-9][0-9 ()./-]{5,30}$", "Enter a phone number of digits, spaces and - ( ) . /, optionally starting with +."
)


def client_visibility(user: Any, *, through: str = "") -> models.Q:
    """The one rule for who sees which client, as a filter on Client or on a model that points at it.

    `through` is the path from the filtered model to its client (`"client__"` for a transaction).
    Superusers, Operations and Auditors see every client; an advisor sees the clients they advise;
    anyone else sees none.
    """
    if sees_all_clients(user):
        return models.Q()
    if is_advisor(user):
        return models.Q(**{f"{through}advisor": user.pk})
    return models.Q(pk__in=[])


def visibility_key(user: Any) -> str:
    """A short key naming what `client_visibility` lets the user see, for cache keys."""
    if sees_all_clients(user):
        return "all"
    if is_advisor(user):
        return f"advisor:{user.pk}"
    return "none"


class ClientQuerySet(models.QuerySet["Client"]):
    def visible_to(self, user: Any) -> Self:
        return self.filter(client_visibility(user))


class Client(TimeStampedModel):
    name = models.CharField(max_length=200)
    email = models.EmailField(unique=True, help_text="Also the client's natural key in imports.")
    phone = models.CharField(max_length=32, blank=True, validators=[validate_phone])
    is_active = models.BooleanField(default=True)
    advisor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        related_name="advised_clients",
        help_text="The staff member responsible for this client.",
    )
    base_currency = CurrencyField(help_text="ISO 4217 code of the currency the client reports in.")
    notes = notes_field()

    objects = ClientQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]
        constraints = [
            models.UniqueConstraint(
                Lower("email"),
                name="clients_client_email_ci_unique",
                violation_error_message="A client with this email address already exists.",
            ),
            currency_constraint("base_currency", name="clients_client_base_currency_iso"),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        super().clean()
        self.email = (self.email or "").strip().lower()

    def is_visible_to(self, user: Any) -> bool:
        return sees_all_clients(user) or (is_advisor(user) and self.advisor_id == user.pk)
