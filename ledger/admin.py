from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest

from clients.admin import ClientScopedAdminMixin, PortfolioListFilter, add_client_inline
from portfolio_site.admin_utils import ReadOnlyAdminMixin, ReadOnlyInline, error_text
from portfolio_site.display import money_column
from portfolio_site.errors import ConflictError

from . import services
from .models import Transaction


@admin.register(Transaction)
class TransactionAdmin(ReadOnlyAdminMixin, ClientScopedAdminMixin, admin.ModelAdmin):
    """Read-only: posted transactions are never edited or deleted. Corrections are reversals."""

    list_display = [
        "date",
        "client",
        "portfolio_name",
        "kind",
        "amount_shown",
        "reference",
        "reverses",
        "created_by",
    ]
    list_filter = ["kind", "currency", PortfolioListFilter, "date"]
    list_select_related = ["client", "portfolio", "created_by", "reverses"]
    search_fields = [
        "reference",
        "notes",
        "client__name",
        "client__email",
        "portfolio__name",
        "portfolio__account_number",
    ]
    date_hierarchy = "date"
    actions = ["reverse_selected"]
    show_full_result_count = False  # COUNT(*) over a million-row ledger on every page is the slow part
    # The amount as people read it (its currency's minor unit, with the code), on the list and the read-only page.
    amount_shown = money_column("amount", description="amount")
    readonly_fields = ["amount_shown"]

    def get_fields(self, request: HttpRequest, obj: Transaction | None = None) -> list[Any]:
        # In the amount's place, not appended after every other field as a read-only extra would be.
        fields = [name for name in super().get_fields(request, obj) if name != "amount_shown"]
        return ["amount_shown" if name == "amount" else name for name in fields]

    @admin.action(
        description="Reverse selected deposits, withdrawals, interest, fees and taxes", permissions=["reverse"]
    )
    def reverse_selected(self, request: HttpRequest, queryset: QuerySet[Transaction]) -> None:
        reversed_count = 0
        for tx in queryset.order_by("pk"):
            try:
                services.transaction_reverse(actor=request.user, transaction=tx)
            except (ConflictError, PermissionDenied) as error:
                self.message_user(request, f"{tx}: {error_text(error)}", messages.ERROR)
            else:
                reversed_count += 1
        if reversed_count:
            self.message_user(request, f"Reversed {reversed_count} transaction(s).", messages.SUCCESS)

    @admin.display(description="Portfolio", ordering="portfolio__name")
    def portfolio_name(self, obj: Transaction) -> str:
        # The client has its own column: the portfolio's name alone, without joining its client a second time.
        return obj.portfolio.name

    def has_reverse_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("ledger.add_transaction")


class TransactionInline(ReadOnlyInline):
    model = Transaction
    fk_name = "client"
    fields = readonly_fields = ("date", "portfolio_name", "kind", "amount_shown", "reference", "reverses")
    amount_shown = money_column("amount", description="amount")
    verbose_name_plural = f"Latest {ReadOnlyInline.max_rows} transactions"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Transaction]:
        return super().get_queryset(request).select_related("portfolio", "reverses")

    @admin.display(description="Portfolio")
    def portfolio_name(self, obj: Transaction) -> str:
        return obj.portfolio.name


add_client_inline(TransactionInline)
