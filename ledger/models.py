from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models.functions import Coalesce

from clients.scope import ClientOwnedQuerySet
from portfolio_site import display
from portfolio_site.imports.models import import_batch_field
from portfolio_site.models import TimeStampedModel, notes_field
from portfolio_site.money import CurrencyField, amount_field, currency_constraint


class TransactionQuerySet(ClientOwnedQuerySet["Transaction"]):
    client_path = "client"


class TransactionKind(models.TextChoices):
    DEPOSIT = "deposit", "Deposit"
    WITHDRAWAL = "withdrawal", "Withdrawal"
    BUY = "buy", "Buy settlement"
    SELL = "sell", "Sell settlement"
    TRANSFER_IN = "transfer_in", "Transfer in"
    TRANSFER_OUT = "transfer_out", "Transfer out"
    INTEREST = "interest", "Interest"
    FEE = "fee", "Fee"
    TAX = "tax", "Tax"
    TAX_REFUND = "tax_refund", "Tax refund"
    DIVIDEND = "dividend", "Dividend"


class Transaction(TimeStampedModel):
    """A posted cash movement in one portfolio. Never edited or deleted: a correction is a reversal pointing at
    the original. Its client is its portfolio's client (kept on the row for simple queries, and held to agree by
    a (portfolio, client) foreign key)."""

    Kind = TransactionKind
    INFLOWS = (Kind.DEPOSIT, Kind.SELL, Kind.TRANSFER_IN, Kind.INTEREST, Kind.TAX_REFUND, Kind.DIVIDEND)
    OUTFLOWS = (Kind.WITHDRAWAL, Kind.BUY, Kind.TRANSFER_OUT, Kind.FEE, Kind.TAX)
    CASH_MOVEMENTS = (Kind.DEPOSIT, Kind.WITHDRAWAL)
    # Cash earned or spent inside the portfolio without a trade: part of its performance, never an external flow (a
    # portfolio's only external flows are deposits, withdrawals and transfers).
    INCOME_AND_COSTS = (Kind.INTEREST, Kind.FEE, Kind.TAX, Kind.TAX_REFUND)
    # What is posted directly (API, import, service `transaction_post`); everything else is posted by the event it
    # belongs to (a trade, a transfer, a dividend).
    DIRECT = CASH_MOVEMENTS + INCOME_AND_COSTS
    SETTLEMENTS = (Kind.BUY, Kind.SELL)
    TRANSFERS = (Kind.TRANSFER_IN, Kind.TRANSFER_OUT)
    DIVIDENDS = (Kind.DIVIDEND,)

    # No index of their own: (client, currency) and (portfolio, currency) below lead with them, and serve every
    # lookup by either (the (portfolio, client) key's check on delete included); a third index only slowed each write.
    # Checked by one key, not three: the (portfolio, client) foreign key (clients.migration_ops) holds both to exist
    # and to agree, so neither has a constraint of its own.
    client = models.ForeignKey(
        "clients.Client", on_delete=models.PROTECT, related_name="transactions", db_index=False, db_constraint=False
    )
    portfolio = models.ForeignKey(
        "clients.Portfolio", on_delete=models.PROTECT, related_name="transactions", db_index=False, db_constraint=False
    )
    kind = models.CharField(max_length=16, choices=Kind.choices)
    amount = amount_field(help_text="Always positive; the kind (and being a reversal) gives the direction.")
    currency = CurrencyField()
    date = models.DateField(help_text="Value date.")
    notes = notes_field()
    # NULL rather than "" when absent, so that rows without a reference never collide on the unique key.
    reference = models.CharField(  # noqa: DJ001
        max_length=100,
        null=True,
        blank=True,
        help_text="External id, unique per portfolio: posting the same reference twice posts once.",
    )
    # NULL unless imported without a reference: then a stable hash of the row and its occurrence in the file.
    import_key = models.CharField(  # noqa: DJ001
        max_length=80,
        null=True,
        blank=True,
        editable=False,
        help_text="Set by imports for rows without a reference, so that importing a file twice posts it once.",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    reverses = models.OneToOneField(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="reversal",
        help_text="The transaction this one cancels.",
    )
    counterpart = models.OneToOneField(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="counterpart_of",
        help_text="For a transfer's incoming leg: the outgoing leg in the other portfolio.",
    )

    objects = TransactionQuerySet.as_manager()

    import_batch = import_batch_field()

    class Meta:
        ordering = ["-date", "-id"]
        indexes = [
            # The default ordering's, with its id tie-breaker, and each list filter's ahead of it: a page of a
            # million-row ledger is read off an index, newest first, instead of sorting the table.
            models.Index(fields=["-date", "-id"], name="ledger_tx_date_id"),
            models.Index(fields=["kind", "-date", "-id"], name="ledger_tx_kind_date_id"),
            models.Index(fields=["currency", "-date", "-id"], name="ledger_tx_currency_date_id"),
            # The admin's search finds a reference by it; only the rows that have one are in it.
            models.Index(fields=["reference"], condition=models.Q(reference__isnull=False), name="ledger_tx_reference"),
            models.Index(fields=["client", "currency"], name="ledger_tx_client_currency"),
            models.Index(fields=["portfolio", "currency"], name="ledger_tx_portfolio_currency"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(amount__gt=0),
                name="ledger_transaction_amount_positive",
                violation_error_message="The amount must be greater than zero.",
            ),
            models.CheckConstraint(
                condition=models.Q(kind__in=TransactionKind.values),
                name="ledger_transaction_kind_valid",
                violation_error_message="Unknown transaction kind.",
            ),
            models.CheckConstraint(
                condition=~models.Q(reverses=models.F("pk")),
                name="ledger_transaction_not_self_reversal",
                violation_error_message="A transaction cannot reverse itself.",
            ),
            models.UniqueConstraint(
                fields=["portfolio", "reference"],
                name="ledger_transaction_reference_unique_per_portfolio",
                violation_error_message="This portfolio already has a transaction with this reference.",
            ),
            models.UniqueConstraint(
                fields=["portfolio", "import_key"],
                name="ledger_transaction_import_key_unique_per_portfolio",
                violation_error_message="This row was already imported for this portfolio.",
            ),
            # Only an original incoming leg names its outgoing leg; a reversal of a leg names none.
            models.CheckConstraint(
                condition=models.Q(kind="transfer_in", reverses__isnull=True, counterpart__isnull=False)
                | (~models.Q(kind="transfer_in", reverses__isnull=True) & models.Q(counterpart__isnull=True)),
                name="ledger_transaction_transfer_in_has_counterpart",
                violation_error_message="A transfer's incoming leg names its outgoing leg, and only it does.",
            ),
            currency_constraint("currency", name="ledger_transaction_currency_iso"),
        ]

    def __str__(self) -> str:
        # As people read it (the admin names a transaction by this: lists, links, titles); the amount stays exact.
        label = f"{self.get_kind_display()} {display.money(self.amount, self.currency)}"
        return f"Reversal of {label}" if self.reverses_id else label

    def clean(self) -> None:
        super().clean()
        if self.reference == "":
            self.reference = None
        if self.portfolio_id is not None and self.client_id is not None and self.portfolio.client_id != self.client_id:
            raise ValidationError({"portfolio": "The portfolio belongs to another client."})


def signed_amount() -> models.Case:
    """A transaction's amount with the sign of its effect on cash: a reversal undoes what it reverses."""
    inflow = models.Q(kind__in=Transaction.INFLOWS, reverses__isnull=True) | models.Q(
        kind__in=Transaction.OUTFLOWS, reverses__isnull=False
    )
    return models.Case(
        models.When(inflow, then=models.F("amount")),
        default=-models.F("amount"),
        output_field=amount_field(),
    )


def effective_date() -> Coalesce:
    """The day a transaction counts in balances: its own date, or for a reversal the date of what it reverses.

    A reversal is a correction: the ledger keeps it with its own posting date (the audit trail), and every
    balance as of a day nets it out against its original from the original's date.
    """
    return Coalesce(models.F("reverses__date"), models.F("date"))


class CashHoldQuerySet(ClientOwnedQuerySet["CashHold"]):
    client_path = "client"


class CashHold(TimeStampedModel):
    """Cash of one portfolio set aside for a purpose the ledger does not know (an order, say), named by an opaque
    `reference` its owner chose ("order:42"). While the row exists the cash is on hold: every check that takes
    cash out keeps the portfolio's cash of every day from today on at or above its holds in that currency (see
    `ledger.selectors.cash_shortfalls`). Releasing the hold deletes the row. Its client is its portfolio's client
    (kept on the row for scoping, and held to agree by a (portfolio, client) foreign key, as a transaction's)."""

    # Checked by one key, not three: the (portfolio, client) foreign key (clients.migration_ops) holds both to exist
    # and to agree, so neither has a constraint of its own.
    client = models.ForeignKey(
        "clients.Client", on_delete=models.PROTECT, related_name="cash_holds", db_index=False, db_constraint=False
    )
    portfolio = models.ForeignKey(
        "clients.Portfolio", on_delete=models.PROTECT, related_name="cash_holds", db_constraint=False
    )
    currency = CurrencyField()
    amount = amount_field(help_text="Cash on hold, in `currency`; always positive.")
    reference = models.CharField(
        max_length=100, unique=True, help_text="The holder's own name for the hold (e.g. order:42): one hold each."
    )

    objects = CashHoldQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["client", "currency"], name="ledger_cashhold_client_ccy")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(amount__gt=0),
                name="ledger_cashhold_amount_positive",
                violation_error_message="A hold's amount must be greater than zero.",
            ),
            currency_constraint("currency", name="ledger_cashhold_currency_iso"),
        ]

    def __str__(self) -> str:
        return f"Hold {self.reference}: {display.money(self.amount, self.currency)}"

    def clean(self) -> None:
        super().clean()
        if self.portfolio_id is not None and self.client_id is not None and self.portfolio.client_id != self.client_id:
            raise ValidationError({"portfolio": "The portfolio belongs to another client."})
