from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import router
from django.db import transaction as db_transaction
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from clients.admin import ClientScopedAdminMixin, OwnerIndexedSearchMixin, PortfolioListFilter, add_client_inline
from portfolio_site.admin_large import DistinctValuesListFilter, LargeTableAdminMixin
from portfolio_site.admin_utils import ReadOnlyAdminMixin, ReadOnlyInline, error_text
from portfolio_site.display import money_column
from portfolio_site.errors import ConflictError
from portfolio_site.models import NOTES_MAX_LENGTH

from . import services
from .models import CashHold, Transaction

REVERSE_TEMPLATE = "admin/ledger/transaction/reverse_confirmation.html"


class ReverseForm(forms.Form):
    """The reason a correction is made: required, since a reversal without one leaves the audit trail mute."""

    reason = forms.CharField(
        max_length=NOTES_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
        help_text="Why these transactions are reversed; kept as each reversal's notes.",
    )


@admin.register(Transaction)
class TransactionAdmin(
    LargeTableAdminMixin, OwnerIndexedSearchMixin, ReadOnlyAdminMixin, ClientScopedAdminMixin, admin.ModelAdmin
):
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
    list_filter = ["kind", ("currency", DistinctValuesListFilter), PortfolioListFilter, "date"]
    list_select_related = ["client", "portfolio", "created_by", "reverses"]
    date_hierarchy = "date"
    actions = ["reverse_selected"]
    # The amount as people read it (its currency's minor unit, with the code), on the list and the read-only page.
    amount_shown = money_column("amount", description="amount")
    readonly_fields = ["amount_shown"]

    def exact_search(self, term: str) -> Q:
        return Q(reference=term)

    def get_fields(self, request: HttpRequest, obj: Transaction | None = None) -> list[Any]:
        # In the amount's place, not appended after every other field as a read-only extra would be.
        fields = [name for name in super().get_fields(request, obj) if name != "amount_shown"]
        return ["amount_shown" if name == "amount" else name for name in fields]

    @admin.action(
        description="Reverse selected deposits, withdrawals, interest, fees and taxes…", permissions=["reverse"]
    )
    def reverse_selected(self, request: HttpRequest, queryset: QuerySet[Transaction]) -> HttpResponse | None:
        """First a confirmation page asking for the reason (as Django's delete asks for a confirmation), then the
        reversals, all or none. `queryset` is the scoped list's: another advisor's ids select nothing."""
        selected = list(queryset.select_related("client", "portfolio").order_by("pk"))
        form = ReverseForm(request.POST if "post" in request.POST else None)
        if form.is_bound and form.is_valid():
            self._reverse_all(request, selected, form.cleaned_data["reason"])
            return None  # back to the list, with the messages
        return self._reverse_confirmation(request, selected, form, single=False)

    def reverse_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The change page's "Reverse" button: the same confirmation and service, for one transaction."""
        if not self.has_reverse_permission(request):
            raise PermissionDenied
        tx = self.get_object(request, unquote(object_id))  # scoped: another advisor's reads as missing
        if tx is None:
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)  # type: ignore[attr-defined]
        form = ReverseForm(request.POST if request.method == "POST" else None)
        if form.is_bound and form.is_valid():
            self._reverse_all(request, [tx], form.cleaned_data["reason"])
            return HttpResponseRedirect(reverse("admin:ledger_transaction_change", args=[tx.pk]))
        return self._reverse_confirmation(request, [tx], form, single=True)

    def _reverse_confirmation(
        self, request: HttpRequest, selected: list[Transaction], form: ReverseForm, *, single: bool
    ) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": "Reverse transactions",
            "opts": self.opts,
            "transactions": selected,
            "form": form,
            "single": single,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, REVERSE_TEMPLATE, context)

    def _reverse_all(self, request: HttpRequest, selected: list[Transaction], reason: str) -> bool:
        """Reverses every selected transaction through `transaction_reverse`, with the reason as its notes, in one
        database transaction: if any is refused (a trade's or a dividend's cash, already reversed, a reversal, cash
        that would go negative), every refusal is reported and nothing is reversed."""
        # Reversing one leg of a transfer reverses both: an incoming leg whose outgoing leg is selected too is done
        # by that one (the service's rule; told apart here from the rows in hand, without a query per row).
        ids = {tx.pk for tx in selected}
        selected = [
            tx
            for tx in selected
            if not (tx.kind == Transaction.Kind.TRANSFER_IN and tx.reverses_id is None and tx.counterpart_id in ids)
        ]
        refusals: list[str] = []
        reversed_count = 0
        with db_transaction.atomic(using=router.db_for_write(Transaction)):
            for tx in selected:
                try:
                    # Its own savepoint (the service is atomic): a refusal undoes only its own writes before the
                    # whole action is rolled back below.
                    services.transaction_reverse(actor=request.user, transaction=tx, notes=reason)
                except (ConflictError, PermissionDenied, ValidationError) as error:
                    refusals.append(f"{tx} of {tx.date} ({tx.client}): {error_text(error)}")
                else:
                    reversed_count += 1
            if refusals:
                db_transaction.set_rollback(True)
        for refusal in refusals:
            self.message_user(request, f"Not reversed: {refusal}", messages.ERROR)
        if refusals:
            self.message_user(request, "Nothing was reversed.", messages.WARNING)
            return False
        self.message_user(request, f"Reversed {reversed_count} transaction(s).", messages.SUCCESS)
        return True

    def is_reversible(self, tx: Transaction) -> bool:
        """Whether the change page offers "Reverse": what `transaction_reverse` would accept, as far as the row
        itself tells (the cash check is the service's, when it runs)."""
        if tx.reverses_id is not None or tx.kind in Transaction.SETTLEMENTS or tx.kind in Transaction.DIVIDENDS:
            return False
        return not Transaction.objects.filter(reverses=tx).exists()

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra_context = dict(extra_context or {})
        tx = self.get_object(request, unquote(object_id))
        if tx is not None and self.has_reverse_permission(request) and self.is_reversible(tx):
            extra_context["reverse_url"] = reverse("admin:ledger_transaction_reverse", args=[tx.pk])
        return super().change_view(request, object_id, form_url, extra_context)

    def get_urls(self) -> list[URLPattern]:
        reverse_one = path(
            "<path:object_id>/reverse/",
            self.admin_site.admin_view(self.reverse_view),
            name="ledger_transaction_reverse",
        )
        return [reverse_one, *super().get_urls()]

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


@admin.register(CashHold)
class CashHoldAdmin(ReadOnlyAdminMixin, ClientScopedAdminMixin, admin.ModelAdmin):
    """Read-only: cash holds are placed, resized and released by their holder through `ledger.services` (an order
    holds the cash it may spend); the list shows what is on hold, scoped as every client's rows are."""

    list_display = ["reference", "client", "portfolio", "amount_shown", "created_at", "updated_at"]
    list_filter = ["currency"]
    list_select_related = ["client", "portfolio__client"]
    search_fields = ["reference"]
    amount_shown = money_column("amount", description="amount")
    readonly_fields = ["amount_shown"]
