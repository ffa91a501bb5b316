"""Orders and fills in the admin: scoped like every client-owned list, written only through the trading services.

An order is added as a draft (`order_create`), submitted and cancelled by the list's actions (`order_submit`,
`order_cancel`); it is never edited or deleted. Its fills and its audit trail (order events) show on its page,
read-only. Fills have their own read-only list, where those that exceeded their hold ("needs attention") are found.
The paper broker's own book (PaperOrder, PaperFill) has no door: it is the broker's, not ours.
"""

from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Q, QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from clients.admin import ClientScopedAdminMixin, OwnerIndexedSearchMixin, PortfolioListFilter
from portfolio_site.admin_utils import SERVICE_ERRORS, ReadOnlyAdminMixin, ReadOnlyInline, ServiceAdminMixin, error_text
from portfolio_site.display import money_column, number, number_column
from portfolio_site.history_admin import TrackedHistoryAdmin

from . import rebalancing, services
from .brokers import BrokerUnavailable
from .connections import broker_account_save, connection_check, connection_save, may_read_checks
from .models import (
    BrokerAccount,
    BrokerConnection,
    Fill,
    ModelAssignment,
    ModelPortfolio,
    ModelWeight,
    Order,
    OrderEvent,
    RebalanceProposal,
)

# What an action reports instead of a 500: the services' refusals, and a broker that does not answer a cancel.
REFUSALS = (*SERVICE_ERRORS, BrokerUnavailable)


class OrderForm(forms.ModelForm):
    """A new order, as the API takes it: a draft in a portfolio the user may see, through an active broker connection
    where the portfolio has an account (its only one unless chosen). The limit price's rules are the model's (shown
    on `limit_price`)."""

    connection = forms.ModelChoiceField(
        queryset=BrokerConnection.objects.active(),
        required=False,
        empty_label="The portfolio's only broker account",
        help_text="The broker connection it is placed through: one where the portfolio has an account.",
    )

    class Meta:
        model = Order
        fields = [
            "portfolio",
            "asset",
            "side",
            "quantity",
            "order_type",
            "limit_price",
            "time_in_force",
            "connection",
            "notes",
        ]


class FillInline(ReadOnlyInline):
    model = Fill
    fk_name = "order"
    fields = readonly_fields = (
        "executed_at",
        "quantity_shown",
        "price_shown",
        "fees_shown",
        "taxes_shown",
        "broker_fill_id",
        "allocation",
        "exceeded_hold",
        "shortfall",
    )
    verbose_name_plural = f"Latest {ReadOnlyInline.max_rows} fills"
    quantity_shown = number_column("quantity")
    price_shown = number_column("price")
    fees_shown = money_column("fees", currency="order.asset.currency")
    taxes_shown = money_column("taxes", currency="order.asset.currency")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Fill]:
        # The allocation is shown as its own __str__ names it: its asset and client.
        return super().get_queryset(request).select_related("order__asset", "allocation__asset", "allocation__client")


class OrderEventInline(ReadOnlyInline):
    """The order's audit trail, oldest first: never editable or deletable (the database refuses it as well)."""

    model = OrderEvent
    fk_name = "order"
    max_rows = 200
    show_change_link = False
    fields = readonly_fields = ("at", "actor", "from_status", "to_status", "message")
    verbose_name = "event"
    verbose_name_plural = "Audit trail"

    def get_queryset(self, request: HttpRequest) -> QuerySet[OrderEvent]:
        return super().get_queryset(request).select_related("actor")


@admin.register(Order)
class OrderAdmin(OwnerIndexedSearchMixin, ServiceAdminMixin, ClientScopedAdminMixin, admin.ModelAdmin):
    """Orders: added as drafts through `order_create`, submitted and cancelled by the actions, through the services;
    never edited (cancel and place another) nor deleted (the audit trail keeps them)."""

    form = OrderForm
    list_display = [
        "id",
        "portfolio",
        "asset",
        "side",
        "quantity_shown",
        "filled_shown",
        "order_type",
        "limit_shown",
        "status",
        "connection",
        "submitted_at",
        "placed_by",
    ]
    list_filter = ["status", "side", "connection", "order_type", PortfolioListFilter]
    list_select_related = ["portfolio__client", "asset", "placed_by", "connection"]
    date_hierarchy = "created_at"
    show_full_result_count = False
    search_help_text = (
        "A client's name or email, a portfolio's name or account number, or an exact client order id or broker "
        "order id."
    )
    autocomplete_fields = ["portfolio", "asset"]
    actions = ["submit_selected", "cancel_selected"]
    inlines = [FillInline, OrderEventInline]
    shown_fields = (
        "client",
        "portfolio",
        "asset",
        "side",
        "quantity_shown",
        "order_type",
        "limit_shown",
        "time_in_force",
        "status",
        "filled_shown",
        "remaining_shown",
        "hold_price_shown",
        "connection",
        "account_id",
        "client_order_id",
        "broker_order_id",
        "broker_message",
        "notes",
        "placed_by",
        "submitted_at",
        "expires_at",
        "closed_at",
        "created_at",
        "updated_at",
    )
    quantity_shown = number_column("quantity")
    filled_shown = number_column("filled_quantity", description="filled")
    limit_shown = number_column("limit_price", description="limit")
    hold_price_shown = number_column("hold_price", description="hold price")

    @admin.display(description="remaining")
    def remaining_shown(self, obj: Order) -> str:
        return number(obj.remaining_quantity)

    def exact_search(self, term: str) -> Q:
        return Q(client_order_id=term) | Q(broker_order_id=term)

    # An order changes only through the services (submit, cancel, the broker's reports): its page is read-only.
    def has_change_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Order | None = None) -> bool:
        return False

    def has_submit_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("trading.submit_order")

    def has_cancel_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("trading.cancel_order")

    def get_fields(self, request: HttpRequest, obj: Order | None = None) -> list[Any]:
        return list(OrderForm.Meta.fields) if obj is None else list(self.shown_fields)

    def get_readonly_fields(self, request: HttpRequest, obj: Order | None = None) -> list[str]:
        return [] if obj is None else list(self.shown_fields)

    def get_inlines(self, request: HttpRequest, obj: Order | None) -> list[Any]:
        return list(self.inlines) if obj is not None else []

    def save_model(self, request: HttpRequest, obj: Order, form: Any, change: bool) -> None:
        # Only adding reaches here (no one may change an order): a draft, through the service.
        obj.pk = services.order_create(actor=request.user, **form.cleaned_data).pk

    def response_action(self, request: HttpRequest, queryset: QuerySet[Any], *args: Any) -> HttpResponse | None:
        # Not in one transaction as other lists' actions are: each order is its own, in the services, and a cancel
        # reaches the broker, which no rollback here would undo. Each refusal is reported on its own instead.
        return admin.ModelAdmin.response_action(self, request, queryset)

    @admin.action(description="Submit selected drafts", permissions=["submit"])
    def submit_selected(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        """Each order through `order_submit` (its hold, then a job sends it); a refusal (not a draft, cash or units
        that cannot cover it) is reported and leaves that order a draft, the others submitted."""
        self._each(request, queryset, services.order_submit, done="Submitted", refused="Not submitted")

    @admin.action(description="Cancel selected orders", permissions=["cancel"])
    def cancel_selected(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        """Each order through `order_cancel` (at its broker first when it is there); a refusal (an ended order, a
        broker that refuses or cannot be reached) is reported and leaves that order as it was."""
        self._each(request, queryset, services.order_cancel, done="Cancelled", refused="Not cancelled")

    def _each(
        self, request: HttpRequest, queryset: QuerySet[Order], service: Callable[..., Order], *, done: str, refused: str
    ) -> None:
        # `queryset` is the scoped list's: another advisor's ids in a crafted POST select nothing.
        count = 0
        for order in queryset.select_related("asset").order_by("pk"):
            try:
                service(actor=request.user, order=order)
            except REFUSALS as error:
                text = (
                    f"the broker cannot be reached ({error}); try again"
                    if isinstance(error, BrokerUnavailable)
                    else error_text(error)
                )
                self.message_user(request, f"{refused}: {order}: {text}", messages.ERROR)
            else:
                count += 1
        if count:
            self.message_user(request, f"{done} {count} order(s).", messages.SUCCESS)


class NeedsAttentionFilter(admin.SimpleListFilter):
    """Fills that cost more than their order held and the portfolio had: recorded (they happened at the broker) and
    left for staff to resolve."""

    title = "needs attention"
    parameter_name = "exceeded_hold"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("1", "Yes: exceeded its hold"), ("0", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Fill]) -> QuerySet[Fill]:
        if self.value() in ("0", "1"):
            return queryset.filter(exceeded_hold=self.value() == "1")
        return queryset


@admin.register(Fill)
class FillAdmin(ReadOnlyAdminMixin, ClientScopedAdminMixin, admin.ModelAdmin):
    """Read-only: fills are the broker's, recorded by the services as allocations. Those flagged `exceeded_hold`
    cost more than was held and available; their shortfall says what is missing."""

    list_display = [
        "executed_at",
        "client",
        "order",
        "asset",
        "side",
        "quantity_shown",
        "price_shown",
        "fees_shown",
        "exceeded_hold",
        "shortfall",
        "allocation",
    ]
    list_filter = [NeedsAttentionFilter, "executed_at"]
    list_select_related = ["client", "order__asset", "allocation__asset", "allocation__client"]
    date_hierarchy = "executed_at"
    show_full_result_count = False
    search_fields = ["broker_fill_id"]
    search_help_text = "An exact broker fill id, client order id or broker order id."
    quantity_shown = number_column("quantity")
    price_shown = number_column("price")
    fees_shown = money_column("fees", currency="order.asset.currency")
    taxes_shown = money_column("taxes", currency="order.asset.currency")
    fields = readonly_fields = (
        "order",
        "client",
        "asset",
        "side",
        "quantity_shown",
        "price_shown",
        "fees_shown",
        "taxes_shown",
        "executed_at",
        "broker_fill_id",
        "allocation",
        "exceeded_hold",
        "shortfall",
        "created_at",
    )

    @admin.display(description="asset", ordering="order__asset__ticker")
    def asset(self, obj: Fill) -> str:
        return str(obj.order.asset)

    @admin.display(description="side")
    def side(self, obj: Fill) -> str:
        return obj.order.get_side_display()

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Fill], search_term: str) -> Any:
        # Ids are looked up exactly, each by its unique index, not browsed.
        term = search_term.strip()
        if not term:
            return queryset, False
        ids = Q(broker_fill_id=term) | Q(order__client_order_id=term) | Q(order__broker_order_id=term)
        return queryset.filter(ids), False


# --- Broker connections and accounts -------------------------------------------------------------------------


class _SecretInput(forms.PasswordInput):
    """Never renders a value back: a stored secret is not sent to the browser, and a refused form is not refilled."""

    def __init__(self) -> None:
        super().__init__(render_value=False, attrs={"autocomplete": "new-password"})


class BrokerConnectionForm(forms.ModelForm):
    base_url = forms.URLField(
        required=False,
        assume_scheme="https",
        help_text=BrokerConnection._meta.get_field("base_url").help_text,
    )
    # Not the model's own field names: those columns hold ciphertext, never edited as such.
    new_api_key = forms.CharField(label="API key", required=False, strip=True, max_length=500, widget=_SecretInput())
    new_api_secret = forms.CharField(
        label="API secret", required=False, strip=True, max_length=500, widget=_SecretInput()
    )

    class Meta:
        model = BrokerConnection
        fields = ["name", "kind", "environment", "base_url", "is_active"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        connection = self.instance
        if connection.pk is not None and "kind" in self.fields:
            self.fields["kind"].disabled = True
            self.fields["kind"].help_text = "A connection's kind cannot change: add another connection."
        if connection.credentials_set_at is not None:
            when = connection.credentials_set_at.strftime("%Y-%m-%d %H:%M %Z")
            hint = f"Set on {when}: never shown again. Leave both empty to keep them; give both to replace them."
        else:
            hint = "Not set. Needed for a remote broker (Alpaca), given together with the secret."
        for name in ("new_api_key", "new_api_secret"):
            if name in self.fields:
                self.fields[name].help_text = hint

    def credentials(self) -> dict[str, str | None]:
        """What the service takes: both given, or neither (None) to keep what is stored."""
        api_key, api_secret = self.cleaned_data.get("new_api_key"), self.cleaned_data.get("new_api_secret")
        if not api_key and not api_secret:
            return {"api_key": None, "api_secret": None}
        return {"api_key": api_key or None, "api_secret": api_secret or None}


@admin.register(BrokerConnection)
class BrokerConnectionAdmin(ServiceAdminMixin, TrackedHistoryAdmin):
    """Broker connections: managed by superusers and Operations, through `connection_save`; the credentials are
    write-only (the page says when they were set). "Test connection" asks the broker for its account, placing
    nothing. A connection is no import kind, so its list exports nothing."""

    form = BrokerConnectionForm
    list_display = [
        "name",
        "kind",
        "environment",
        "is_active",
        "credentials_set_at",
        "last_checked_at",
        "last_check_ok",
        "last_check_message",
    ]
    list_filter = ["kind", "environment", "is_active"]
    search_fields = ["name"]
    readonly_fields = ["credentials_set_at", "last_checked_at", "last_check_ok", "last_check_message"]
    actions = ["check_selected"]

    def save_model(self, request: HttpRequest, obj: BrokerConnection, form: Any, change: bool) -> None:
        connection_save(connection=obj, **form.credentials())

    def has_check_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("trading.check_brokerconnection")

    def get_list_display(self, request: HttpRequest) -> list[str]:
        # A check's answer describes the firm's account at the broker: for those who test connections.
        shown = list(super().get_list_display(request))
        return shown if may_read_checks(request.user) else [f for f in shown if f != "last_check_message"]

    def get_fields(self, request: HttpRequest, obj: BrokerConnection | None = None) -> list[Any]:
        fields = [*BrokerConnectionForm.Meta.fields, "new_api_key", "new_api_secret", "credentials_set_at"]
        if obj is not None:
            fields += ["last_checked_at", "last_check_ok"]
            if may_read_checks(request.user):
                fields.append("last_check_message")
        return fields

    @admin.action(description="Test connection (places nothing)", permissions=["check"])
    def check_selected(self, request: HttpRequest, queryset: QuerySet[BrokerConnection]) -> None:
        for connection in queryset.order_by("name"):
            result = connection_check(connection=connection)
            level = messages.SUCCESS if result.ok else messages.ERROR
            self.message_user(request, f"{connection}: {result.message}", level)

    def response_action(self, request: HttpRequest, queryset: QuerySet[Any], *args: Any) -> HttpResponse | None:
        # Not in one transaction: each check is recorded on its connection as it ends, whatever the others do.
        return admin.ModelAdmin.response_action(self, request, queryset)


@admin.register(BrokerAccount)
class BrokerAccountAdmin(OwnerIndexedSearchMixin, ServiceAdminMixin, ClientScopedAdminMixin, TrackedHistoryAdmin):
    """Portfolios' accounts at broker connections, scoped like every client's row; managed by superusers and
    Operations through `broker_account_save`."""

    list_display = ["portfolio", "client", "connection", "account_id"]
    list_filter = ["connection", PortfolioListFilter]
    list_select_related = ["portfolio__client", "client", "connection"]
    autocomplete_fields = ["portfolio"]
    fields = ["connection", "portfolio", "account_id"]

    def get_readonly_fields(self, request: HttpRequest, obj: BrokerAccount | None = None) -> list[str]:
        # An account stays with its portfolio (broker_account_save refuses a move): not offered once it exists.
        return ["portfolio"] if obj is not None else []

    search_help_text = "A client's name or email, a portfolio's name or account number, or an exact account id."

    def exact_search(self, term: str) -> Q:
        return Q(account_id=term)

    def save_model(self, request: HttpRequest, obj: BrokerAccount, form: Any, change: bool) -> None:
        broker_account_save(account=obj)


# --- Model portfolios ------------------------------------------------------------------------------------------


class ModelWeightFormSet(BaseInlineFormSet):
    """The weights of the page, checked to sum to 100 with the page's cash weight before anything is written, so
    the error shows on the page; `model_portfolio_save` checks it again as it writes."""

    def clean(self) -> None:
        super().clean()
        if any(self.errors):
            return
        total = sum((weight for _, weight in self.weights()), Decimal(0)) + (self.instance.cash_weight or Decimal(0))
        if total != 100:
            raise forms.ValidationError(
                f"The weights and the cash weight must sum to exactly 100%; they sum to {number(total)}%."
            )

    def weights(self) -> list[tuple[Any, Decimal]]:
        return [
            (form.cleaned_data["asset"], form.cleaned_data["weight"])
            for form in self.forms
            if form.cleaned_data and not form.cleaned_data.get("DELETE")
        ]


class ModelWeightInline(admin.TabularInline):
    model = ModelWeight
    formset = ModelWeightFormSet
    fields = ["asset", "weight"]
    autocomplete_fields = ["asset"]
    extra = 1


@admin.register(ModelPortfolio)
class ModelPortfolioAdmin(ServiceAdminMixin, TrackedHistoryAdmin):
    """Firm-wide model portfolios with their weights, managed by Operations, written (model and weights at once)
    through `model_portfolio_save`."""

    WRITE_METHODS = (*ServiceAdminMixin.WRITE_METHODS, "save_related")

    list_display = ["name", "cash_weight", "drift_band", "minimum_trade", "fractional", "updated_at"]
    list_filter = ["fractional"]
    search_fields = ["name"]
    fields = ["name", "cash_weight", "drift_band", "minimum_trade", "fractional", "notes"]
    readonly_fields = ["created_at", "updated_at"]
    inlines = [ModelWeightInline]

    def save_model(self, request: HttpRequest, obj: ModelPortfolio, form: Any, change: bool) -> None:
        # Saved with its weights in save_related: alone, a changed cash weight would be checked against the old
        # weights and refused.
        pass

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        found = [formset for formset in formsets if isinstance(formset, ModelWeightFormSet)]
        if not found:  # no weights inline for this user (no permission on weights): the model's fields alone
            rebalancing.model_portfolio_save(model=form.instance, weights=None)
            return
        [weights] = found
        weights.save(commit=False)  # writes nothing: fills what the change message reads (new, changed, deleted)
        given = [rebalancing.WeightInput(asset, weight) for asset, weight in weights.weights()]
        rebalancing.model_portfolio_save(model=form.instance, weights=given)

    def delete_model(self, request: HttpRequest, obj: ModelPortfolio) -> None:
        rebalancing.model_portfolio_delete(model=obj)


class OutsideBandFilter(admin.SimpleListFilter):
    """Followed portfolios outside (or inside) their model's band: drift is computed, not stored, so the scoped
    list is valued once, in a fixed number of queries, and filtered by its ids."""

    title = "drift"
    parameter_name = "outside_band"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Outside the band"), ("no", "Inside the band")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ModelAssignment]) -> QuerySet[ModelAssignment]:
        if self.value() not in ("yes", "no"):
            return queryset
        outside = self.value() == "yes"
        assignments = list(queryset.select_related("model", "portfolio"))
        found = rebalancing.drifts(assignments)
        return queryset.filter(
            pk__in=[a.pk for a in assignments if bool(found[a.portfolio_id].outside_band) is outside]
        )


@admin.register(ModelAssignment)
class ModelAssignmentAdmin(OwnerIndexedSearchMixin, ServiceAdminMixin, ClientScopedAdminMixin, TrackedHistoryAdmin):
    """Portfolios following models, scoped like every client's row, with each one's drift from its model (the
    drift report): advisors manage their clients' through `model_assignment_save`."""

    list_display = ["portfolio", "client", "model", "largest_drift", "outside_band"]
    list_filter = [OutsideBandFilter, "model", PortfolioListFilter]
    list_select_related = ["portfolio__client", "client", "model"]
    autocomplete_fields = ["portfolio"]
    fields = ["portfolio", "model"]
    search_help_text = "A client's name or email, or a portfolio's name or account number."

    def get_readonly_fields(self, request: HttpRequest, obj: ModelAssignment | None = None) -> list[str]:
        # An assignment stays with its portfolio (model_assignment_save refuses a move): not offered once it exists.
        return ["portfolio"] if obj is not None else []

    def exact_search(self, term: str) -> Q:
        return Q(pk__in=[])

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        response = super().changelist_view(request, extra_context)
        changelist = getattr(response, "context_data", {}).get("cl") if isinstance(response, TemplateResponse) else None
        if changelist is not None:
            # The page's rows valued together before the template renders their drift columns.
            rows = list(changelist.result_list)
            found = rebalancing.drifts(rows)
            for row in rows:
                row.drift = found.get(row.portfolio_id)
        return response

    @admin.display(description="largest drift (pp)")
    def largest_drift(self, obj: ModelAssignment) -> str:
        drift = getattr(obj, "drift", None)
        if drift is None or drift.largest is None:
            return "not valued: " + ", ".join(drift.missing) if drift is not None and drift.missing else "—"
        return number(drift.largest.quantize(Decimal("0.01")))

    @admin.display(description="outside band", boolean=True)
    def outside_band(self, obj: ModelAssignment) -> bool | None:
        drift = getattr(obj, "drift", None)
        return None if drift is None else drift.outside_band

    def save_model(self, request: HttpRequest, obj: ModelAssignment, form: Any, change: bool) -> None:
        rebalancing.model_assignment_save(actor=request.user, assignment=obj)

    def delete_model(self, request: HttpRequest, obj: ModelAssignment) -> None:
        rebalancing.model_assignment_delete(actor=request.user, assignment=obj)


@admin.register(RebalanceProposal)
class RebalanceProposalAdmin(ReadOnlyAdminMixin, ClientScopedAdminMixin, admin.ModelAdmin):
    """Stored rebalancing proposals, read-only (made and accepted through the API), scoped like every client's
    row."""

    list_display = ["id", "portfolio", "client", "model", "created_at", "created_by", "accepted_at"]
    list_filter = ["model", PortfolioListFilter]
    list_select_related = ["portfolio__client", "client", "model", "created_by"]
    fields = readonly_fields = (
        "portfolio",
        "client",
        "model",
        "created_by",
        "created_at",
        "basis",
        "accepted_at",
        "accepted_by",
        "proposal",
    )
