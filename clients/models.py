from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from django.db.models.functions import Lower

from portfolio_site.historical import TrackedHistory
from portfolio_site.imports.models import import_batch_field
from portfolio_site.models import TimeStampedModel, notes_field
from portfolio_site.money import CurrencyField, currency_constraint

from .scope import ClientOwnedQuerySet

validate_phone = RegexValidator(
    r"^\+?[0-9][0-9 ()./-]{5,30}$", "Enter a phone number of digits, spaces and - ( ) . /, optionally starting with +."
)


class ClientQuerySet(ClientOwnedQuerySet["Client"]):
    client_path = ""


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

    import_batch = import_batch_field()
    history = TrackedHistory(excluded_fields=["updated_at"])

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


class PortfolioQuerySet(ClientOwnedQuerySet["Portfolio"]):
    client_path = "client"


class PortfolioKind(models.TextChoices):
    TAXABLE = "taxable", "Taxable"
    RETIREMENT = "retirement", "Retirement"
    JOINT = "joint", "Joint"
    TRUST = "trust", "Trust"
    OTHER = "other", "Other"


class Portfolio(TimeStampedModel):
    """One of a client's accounts (a taxable account, a retirement account, ...), usually at a custodian,
    with its own cash and holdings. Whoever sees the client sees its portfolios."""

    Kind = PortfolioKind
    DEFAULT_NAME = "Main"

    # Deleting a client takes its empty portfolios with it; a portfolio with any movement protects it (the
    # movements PROTECT their portfolio and client), so no history is ever lost.
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="portfolios")
    name = models.CharField(max_length=100, help_text="Unique per client, whatever the case.")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.OTHER)
    custodian = models.CharField(max_length=100, blank=True, help_text="Who keeps the account (a bank, a broker).")
    account_number = models.CharField(
        max_length=64, blank=True, help_text="The custodian's account number; unique per custodian when given."
    )
    base_currency = CurrencyField(help_text="ISO 4217 code the portfolio reports in; the client's by default.")
    opened_on = models.DateField()
    closed_on = models.DateField(null=True, blank=True, help_text="A closed portfolio accepts no new movements.")
    notes = notes_field()
    # What figures derived from the portfolio's history (valuations, daily values) read to know they are stale:
    # every change to that history (a movement, a price or rate it uses) bumps the version and records the
    # earliest day it changed from (see clients.services.portfolios_history_changed).
    data_version = models.PositiveBigIntegerField(default=0, editable=False)
    history_changed_from = models.DateField(
        null=True, blank=True, editable=False, help_text="Derived daily figures are stale from this day on."
    )

    objects = PortfolioQuerySet.as_manager()

    import_batch = import_batch_field()
    # Change history: data_version and history_changed_from are the derived figures' bookkeeping, not a change.
    history = TrackedHistory(excluded_fields=["updated_at", "data_version", "history_changed_from"])

    class Meta:
        ordering = ["client", "name", "id"]
        constraints = [
            models.UniqueConstraint(
                "client",
                Lower("name"),
                name="clients_portfolio_name_unique_per_client",
                violation_error_message="This client already has a portfolio with this name.",
            ),
            models.UniqueConstraint(
                fields=["custodian", "account_number"],
                condition=~models.Q(account_number=""),
                name="clients_portfolio_account_unique_per_custodian",
                violation_error_message="This custodian already has a portfolio with this account number.",
            ),
            # What the movements' (portfolio, client) foreign key points at: a movement's client is its
            # portfolio's client (see the ledger and holdings migrations that add it).
            models.UniqueConstraint(fields=["id", "client"], name="clients_portfolio_id_client_unique"),
            models.CheckConstraint(
                condition=models.Q(account_number="") | ~models.Q(custodian=""),
                name="clients_portfolio_account_needs_custodian",
                violation_error_message="An account number is given with its custodian.",
            ),
            models.CheckConstraint(
                condition=models.Q(closed_on__isnull=True) | models.Q(closed_on__gte=models.F("opened_on")),
                name="clients_portfolio_closed_after_opened",
                violation_error_message="A portfolio closes on or after the day it opened.",
            ),
            models.CheckConstraint(
                condition=models.Q(kind__in=PortfolioKind.values),
                name="clients_portfolio_kind_valid",
                violation_error_message="Unknown portfolio kind.",
            ),
            models.CheckConstraint(
                condition=~models.Q(name=""),
                name="clients_portfolio_name_not_blank",
                violation_error_message="A portfolio needs a name.",
            ),
            currency_constraint("base_currency", name="clients_portfolio_base_currency_iso"),
        ]

    def __str__(self) -> str:
        return f"{self.client}: {self.name}"

    def clean(self) -> None:
        super().clean()
        self.name = (self.name or "").strip()
        self.custodian = (self.custodian or "").strip()
        self.account_number = (self.account_number or "").strip()

    @property
    def is_open(self) -> bool:
        return self.closed_on is None
