from decimal import Decimal
from typing import Any, ClassVar, cast

from django import forms
from django.contrib import admin
from django.contrib.admin.widgets import AutocompleteSelect
from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.http import HttpRequest

from accounts.admin_site import add_index_panel
from clients.admin import (
    ClientScopedAdminMixin,
    OwnerIndexedSearchMixin,
    PortfolioListFilter,
    add_client_inline,
    add_client_panel,
    movement_portfolios,
)
from clients.models import Client, Portfolio
from clients.services import client_single_portfolio
from portfolio_site.admin_large import DistinctValuesListFilter, LargeTableAdminMixin
from portfolio_site.admin_utils import (
    LatestRowsInline,
    LatestRowsInlineFormSet,
    ReadOnlyAdminMixin,
    ReadOnlyInline,
    ServiceAdminMixin,
    ServiceInlineMixin,
)
from portfolio_site.display import money_column, number_column, plain_decimal
from portfolio_site.history_admin import TrackedHistoryAdmin

from . import dividends as dividend_services
from . import services
from .client_panel import client_income_panel, client_record_panel, client_valuation_panel
from .dashboard_panel import dashboard_panel
from .images.admin import AssetImageInline, LimitedUploadsAdminMixin
from .models import Allocation, Asset, AssetSymbol, Dividend, FxRate, Price, Split, UnitHold


def _changes(form: Any) -> dict[str, Any]:
    return {name: form.cleaned_data[name] for name in form.changed_data}


class AssetSymbolInline(ServiceInlineMixin, admin.TabularInline):
    """The asset's symbol at each market data source (its name in MARKET_DATA_SOURCES): what
    `refresh_market_data` asks that source for. Each row written through the services (ServiceAdminMixin's
    save_formset calls these)."""

    model = AssetSymbol
    fields = ["source", "symbol"]
    extra = 0
    verbose_name = "market data symbol"

    def save_row(self, request: HttpRequest, obj: AssetSymbol, form: Any, change: bool) -> None:
        if change:
            services.asset_symbol_update(asset_symbol=obj)
        else:
            services.asset_symbol_create(asset=obj.asset, source=obj.source, symbol=obj.symbol)

    def delete_row(self, request: HttpRequest, obj: AssetSymbol) -> None:
        services.asset_symbol_delete(asset_symbol=obj)


class AssetForm(forms.ModelForm):
    """An asset's fields; the lot size may be left empty (a form from before it existed): the asset keeps its
    current one, 1 for a new asset."""

    class Meta:
        model = Asset
        fields = ["ticker", "name", "exchange", "currency", "asset_type", "isin", "lot_size", "description"]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "lot_size" in self.fields:
            self.fields["lot_size"].required = False

    def clean_lot_size(self) -> Any:
        return self.cleaned_data.get("lot_size") or self.instance.lot_size


@admin.register(Asset)
class AssetAdmin(LimitedUploadsAdminMixin, ServiceAdminMixin, TrackedHistoryAdmin):
    list_display = ["ticker", "exchange", "name", "asset_type", "currency", "isin", "lot_size_shown"]
    list_filter = ["asset_type", "currency", "exchange"]
    search_fields = ["ticker", "name", "isin"]
    readonly_fields = ["created_at", "updated_at"]
    inlines = [AssetSymbolInline, AssetImageInline]
    form = AssetForm
    lot_size_shown = number_column("lot_size", description="lot size")

    def save_model(self, request: HttpRequest, obj: Asset, form: Any, change: bool) -> None:
        if change:
            services.asset_update(asset=obj, **_changes(form))
        else:
            obj.pk = services.asset_create(**form.cleaned_data).pk

    def delete_model(self, request: HttpRequest, obj: Asset) -> None:
        services.asset_delete(asset=obj)


def asset_named(term: str) -> Q:
    """The rows of the asset whose ticker or ISIN is `term` (any case), for an OwnerIndexedSearchMixin."""
    return Q(asset__in=Asset.objects.filter(Q(ticker__iexact=term) | Q(isin__iexact=term)).values("pk"))


@admin.register(Price)
class PriceAdmin(LargeTableAdminMixin, ServiceAdminMixin, TrackedHistoryAdmin):
    list_display = ["asset", "date", "close_shown"]
    # The latest closes first, read off the date index (the model's own order, by asset, sorts every close).
    ordering = ["-date", "asset__ticker", "asset__exchange"]
    list_filter = ["date"]
    list_select_related = ["asset"]
    search_fields = ["asset__ticker", "asset__name"]
    autocomplete_fields = ["asset"]
    date_hierarchy = "date"
    readonly_fields = ["created_at", "updated_at"]
    close_shown = number_column("close")

    def save_model(self, request: HttpRequest, obj: Price, form: Any, change: bool) -> None:
        if change:
            services.price_update(price=obj, **_changes(form))
        else:
            obj.pk = services.price_create(**form.cleaned_data).pk

    def delete_model(self, request: HttpRequest, obj: Price) -> None:
        services.price_delete(price=obj)


@admin.register(FxRate)
class FxRateAdmin(ServiceAdminMixin, TrackedHistoryAdmin):
    list_display = ["base", "quote", "date", "rate_shown"]
    list_filter = ["base", "quote", "date"]
    search_fields = ["base", "quote"]
    date_hierarchy = "date"
    readonly_fields = ["created_at", "updated_at"]
    show_full_result_count = False
    rate_shown = number_column("rate")

    def save_model(self, request: HttpRequest, obj: FxRate, form: Any, change: bool) -> None:
        if change:
            services.fx_rate_update(fx_rate=obj, **_changes(form))
        else:
            obj.pk = services.fx_rate_create(**form.cleaned_data).pk

    def delete_model(self, request: HttpRequest, obj: FxRate) -> None:
        services.fx_rate_delete(fx_rate=obj)


@admin.register(Split)
class SplitAdmin(ServiceAdminMixin, TrackedHistoryAdmin):
    """Splits through their services: recording one pays its cash in lieu, changing or deleting one takes it back
    (and is refused when later sales need the units it gave)."""

    list_display = ["asset", "date", "new_units_shown", "old_units_shown", "cash_in_lieu_price_shown"]
    list_filter = ["date"]
    list_select_related = ["asset"]
    search_fields = ["asset__ticker", "asset__name"]
    autocomplete_fields = ["asset"]
    date_hierarchy = "date"
    readonly_fields = ["created_at", "updated_at"]
    show_full_result_count = False
    new_units_shown = number_column("new_units")
    old_units_shown = number_column("old_units")
    cash_in_lieu_price_shown = number_column("cash_in_lieu_price")

    def save_model(self, request: HttpRequest, obj: Split, form: Any, change: bool) -> None:
        if change:
            services.split_update(actor=request.user, split=obj, **_changes(form))
        else:
            obj.pk = services.split_create(actor=request.user, **form.cleaned_data).pk

    def delete_model(self, request: HttpRequest, obj: Split) -> None:
        services.split_delete(actor=request.user, split=obj)


class AllocationForm(forms.ModelForm):
    """A movement names its portfolio; naming only the client means the client's only portfolio (as the API and
    imports allow). The client is then the portfolio's, whichever was given."""

    class Meta:
        model = Allocation
        fields = ["client", "portfolio", "asset", "kind", "quantity", "price", "fees", "taxes", "date", "notes"]
        help_texts = {
            "portfolio": "The account the units move in.",
            "client": "Enough on its own when the client has a single portfolio.",
        }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("client", "portfolio"):
            if name in self.fields:
                self.fields[name].required = False
        if "taxes" in self.fields:
            self.fields["taxes"].required = False  # most trades carry none: blank is 0, as in the API and imports

    def clean_taxes(self) -> Decimal:
        return self.cleaned_data.get("taxes") or Decimal("0")

    def clean(self) -> dict[str, Any]:
        super().clean()
        cleaned = self.cleaned_data
        if "portfolio" not in self.fields or "client" in self.errors or "portfolio" in self.errors:
            return cleaned
        client: Client | None = cleaned.get("client") if "client" in self.fields else self.instance.client
        portfolio: Portfolio | None = cleaned.get("portfolio")
        if portfolio is None:
            if client is None:
                self.add_error("portfolio", "Choose a portfolio (or a client who has only one).")
                return cleaned
            try:
                portfolio = client_single_portfolio(client=client)
            except ValidationError as error:
                self.add_error(None, error)
                return cleaned
        elif client is not None and portfolio.client_id != client.pk:
            self.add_error("portfolio", "This portfolio belongs to another client.")
            return cleaned
        cleaned["portfolio"], cleaned["client"] = portfolio, portfolio.client
        return cleaned


@admin.register(Allocation)
class AllocationAdmin(
    LargeTableAdminMixin, OwnerIndexedSearchMixin, ServiceAdminMixin, ClientScopedAdminMixin, TrackedHistoryAdmin
):
    form = AllocationForm
    list_display = [
        "date",
        "client",
        "portfolio_name",
        "asset",
        "kind",
        "quantity_shown",
        "price_shown",
        "fees_shown",
        "taxes_shown",
        "settlement",
    ]
    list_filter = ["kind", PortfolioListFilter, "date"]
    list_select_related = ["client", "portfolio", "asset", "settlement"]
    search_help_text = "A client's name or email, a portfolio's name or account number, or an asset's ticker or ISIN."
    autocomplete_fields = ["client", "portfolio", "asset"]
    date_hierarchy = "date"
    # The counterpart is set by units_transfer only; as a picker it would list every allocation of the firm.
    readonly_fields = ["settlement", "counterpart", "cash_in_lieu_of", "created_at", "updated_at"]
    quantity_shown = number_column("quantity")
    price_shown = number_column("price")
    fees_shown = money_column("fees", currency="asset.currency")
    taxes_shown = money_column("taxes", currency="asset.currency")

    def exact_search(self, term: str) -> Q:
        return asset_named(term)

    @admin.display(description="Portfolio", ordering="portfolio__name")
    def portfolio_name(self, obj: Allocation) -> str:
        # The client has its own column: the portfolio's name alone, without joining its client a second time.
        return obj.portfolio.name

    def get_fields(self, request: HttpRequest, obj: Allocation | None = None) -> list[Any]:
        # What is recorded first, then (on an existing movement) what the services filled in.
        fields: list[Any] = list(AllocationForm.Meta.fields)
        if obj is not None:
            fields += ["settlement", "counterpart", "cash_in_lieu_of", "created_at", "updated_at"]
        return fields

    def get_readonly_fields(self, request: HttpRequest, obj: Allocation | None = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None:
            fields.append("client")  # a movement stays with its client (allocation_update refuses a move anyway)
        return fields

    def get_form(self, request: HttpRequest, obj: Allocation | None = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        if obj is not None and "portfolio" in form.base_fields:
            # Its own portfolio stays a valid choice after closing, so that the service (not a puzzling "select a
            # valid choice") says why a closed portfolio's movement cannot change.
            field = cast(forms.ModelChoiceField, form.base_fields["portfolio"])
            field.queryset = movement_portfolios(request.user, keeping=obj.portfolio_id)
        return form

    def save_model(self, request: HttpRequest, obj: Allocation, form: Any, change: bool) -> None:
        if change:
            changes = _changes(form)
            changes.pop("client", None)  # follows the portfolio; the service derives it
            services.allocation_update(actor=request.user, allocation=obj, **changes)
        else:
            data = {name: value for name, value in form.cleaned_data.items() if name != "client"}
            obj.pk = services.allocation_create(actor=request.user, **data).pk

    def delete_model(self, request: HttpRequest, obj: Allocation) -> None:
        services.allocation_delete(actor=request.user, allocation=obj)


class KnownAutocompleteSelect(AutocompleteSelect):
    """An autocomplete that labels its selected value from `known` (the row's own asset, already joined) instead of a
    query per widget: an inline renders one per row."""

    known: dict[str, str]

    def optgroups(self, name: str, value: Any, attr: Any = None) -> Any:
        selected = {str(v) for v in value if str(v) not in self.choices.field.empty_values}
        known = getattr(self, "known", {})
        if not selected or not selected <= known.keys():
            return super().optgroups(name, value, attr)
        options = [] if self.is_required else [self.create_option(name, "", "", False, 0)]
        for key in sorted(selected):
            options.append(self.create_option(name, key, known[key], True, len(options)))
        return [(None, options, 0)]


class AllocationInlineFormSet(LatestRowsInlineFormSet):
    """The client's latest allocations; each row's portfolio picked from `portfolios` (this client's, as the user
    sees them, read once for all rows): a new row takes an open one, an existing row keeps its own too."""

    portfolios: ClassVar[list[Portfolio]] = []

    def _construct_form(self, i: int, **kwargs: Any) -> Any:
        form = super()._construct_form(i, **kwargs)
        self._limit_choices(form)
        for name in ("quantity", "price", "fees", "taxes"):
            if name in form.initial:
                form.initial[name] = plain_decimal(form.initial[name])  # 12.5, not 12.5000000000
        return form

    @property
    def empty_form(self) -> Any:
        form = super().empty_form
        self._limit_choices(form)
        return form

    def _limit_choices(self, form: Any) -> None:
        own = form.instance.portfolio_id if form.instance.pk is not None else None
        field = form.fields.get("portfolio")
        if field is not None:
            usable = [p for p in self.portfolios if p.closed_on is None or p.pk == own]
            # Validation reads the queryset (a crafted id of another client's portfolio is not a valid choice);
            # the select shows the list, so that twenty rows cost no twenty queries.
            field.queryset = Portfolio.objects.filter(pk__in=[p.pk for p in usable])
            field.choices = [("", "---------"), *((p.pk, p.name) for p in usable)]
        widget = getattr(form.fields.get("asset"), "widget", None)
        widget = getattr(widget, "widget", widget)  # inside the admin's related-object wrapper
        if isinstance(widget, KnownAutocompleteSelect) and form.instance.pk is not None:
            asset = form.instance.asset
            widget.known = {str(asset.pk): str(asset)}


class AllocationInline(ServiceInlineMixin, LatestRowsInline):
    """The client's latest allocations on its page. Those who may change allocations add, change and delete rows
    there, each through the services (ClientAdmin's save_formset calls save_row/delete_row, row by row, in the
    page's transaction); others see them read-only, money as people read it."""

    model = Allocation
    form = AllocationForm
    formset = AllocationInlineFormSet
    editable_fields = ("portfolio", "asset", "kind", "quantity", "price", "fees", "taxes", "date", "notes")
    shown_fields = (
        "date",
        "portfolio_name",
        "asset",
        "kind",
        "quantity_shown",
        "price_shown",
        "fees_shown",
        "taxes_shown",
        "settlement",
    )
    autocomplete_fields = ["asset"]
    verbose_name_plural = f"Latest {LatestRowsInline.max_rows} allocations"
    quantity_shown = number_column("quantity")
    price_shown = number_column("price")
    fees_shown = money_column("fees", currency="asset.currency")
    taxes_shown = money_column("taxes", currency="asset.currency")

    def _editable(self, request: HttpRequest, obj: Client | None) -> bool:
        return self.has_add_permission(request, obj) or self.has_change_permission(request, obj)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> list[Any]:
        if self._editable(request, obj):
            return [*self.editable_fields, "settlement"]
        return list(self.shown_fields)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> list[str]:
        return ["settlement"] if self._editable(request, obj) else list(self.shown_fields)

    # Django's own permission checks on the allocation model (advisors, operations, superusers: yes; auditors: view),
    # and only on an existing client's page: a new client has no portfolio yet.
    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is not None and super().has_add_permission(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is not None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return obj is not None and super().has_delete_permission(request, obj)

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        formset = super().get_formset(request, obj, **kwargs)
        client_portfolios = Portfolio.objects.visible_to(request.user).filter(client=obj) if obj else None
        formset.portfolios = list(client_portfolios.order_by("name", "pk")) if client_portfolios is not None else []
        return formset

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "asset":
            kwargs["widget"] = KnownAutocompleteSelect(db_field, self.admin_site, using=kwargs.get("using"))
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Allocation]:
        return super().get_queryset(request).select_related("portfolio", "asset", "settlement")

    @admin.display(description="Portfolio")
    def portfolio_name(self, obj: Allocation) -> str:
        return obj.portfolio.name

    def save_row(self, request: HttpRequest, obj: Allocation, form: Any, change: bool) -> None:
        if change:
            changes = {name: value for name, value in _changes(form).items() if name in self.editable_fields}
            services.allocation_update(actor=request.user, allocation=obj, **changes)
        else:
            data = {name: form.cleaned_data[name] for name in self.editable_fields if name in form.cleaned_data}
            obj.pk = services.allocation_create(actor=request.user, **data).pk

    def delete_row(self, request: HttpRequest, obj: Allocation) -> None:
        services.allocation_delete(actor=request.user, allocation=obj)


class DividendForm(AllocationForm):
    """Placed in a portfolio as a movement is (the client alone means its single portfolio). The gross or the amount
    per unit, the currency (the asset's by default) and the withholding tax (0) may be left blank."""

    class Meta:
        model = Dividend
        fields = [
            "client",
            "portfolio",
            "asset",
            "ex_date",
            "pay_date",
            "currency",
            "gross",
            "amount_per_unit",
            "withholding_tax",
            "notes",
        ]
        help_texts = {"gross": "Or leave blank and give the amount per unit (times the units held)."}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in ("gross", "currency", "withholding_tax"):
            if name in self.fields:
                self.fields[name].required = False

    def clean_withholding_tax(self) -> Decimal:
        return self.cleaned_data.get("withholding_tax") or Decimal("0")


@admin.register(Dividend)
class DividendAdmin(
    LargeTableAdminMixin, OwnerIndexedSearchMixin, ServiceAdminMixin, ClientScopedAdminMixin, TrackedHistoryAdmin
):
    """Dividends as the API records them: saving posts (or reverses and reposts) the net cash through the
    ledger's service; deleting reverses it."""

    form = DividendForm
    list_display = [
        "pay_date",
        "ex_date",
        "client",
        "portfolio_name",
        "asset",
        "units_shown",
        "gross_shown",
        "withholding_tax_shown",
        "cash",
    ]
    list_filter = [("currency", DistinctValuesListFilter), PortfolioListFilter, "pay_date"]
    list_select_related = ["client", "portfolio", "asset", "cash"]
    search_help_text = AllocationAdmin.search_help_text
    autocomplete_fields = ["client", "portfolio", "asset"]
    date_hierarchy = "pay_date"
    readonly_fields = ["units_shown", "cash", "created_at", "updated_at"]
    units_shown = number_column("units")
    gross_shown = money_column("gross")
    withholding_tax_shown = money_column("withholding_tax")

    def exact_search(self, term: str) -> Q:
        return asset_named(term)

    @admin.display(description="Portfolio", ordering="portfolio__name")
    def portfolio_name(self, obj: Dividend) -> str:
        return obj.portfolio.name

    def get_fields(self, request: HttpRequest, obj: Dividend | None = None) -> list[Any]:
        fields: list[Any] = list(DividendForm.Meta.fields)
        if obj is not None:
            fields += ["units_shown", "cash", "created_at", "updated_at"]
        return fields

    def get_readonly_fields(self, request: HttpRequest, obj: Dividend | None = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None:
            fields.append("client")  # a dividend stays with its client
        return fields

    def get_form(self, request: HttpRequest, obj: Dividend | None = None, change: bool = False, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, change=change, **kwargs)
        if obj is not None and "portfolio" in form.base_fields:
            field = cast(forms.ModelChoiceField, form.base_fields["portfolio"])
            field.queryset = movement_portfolios(request.user, keeping=obj.portfolio_id)
        return form

    def save_model(self, request: HttpRequest, obj: Dividend, form: Any, change: bool) -> None:
        if change:
            changes = _changes(form)
            changes.pop("client", None)
            dividend_services.dividend_update(actor=request.user, dividend=obj, **changes)
        else:
            data = {name: value for name, value in form.cleaned_data.items() if name != "client"}
            data["currency"] = data.get("currency") or ""
            obj.pk = dividend_services.dividend_create(actor=request.user, **data).pk

    def delete_model(self, request: HttpRequest, obj: Dividend) -> None:
        dividend_services.dividend_delete(actor=request.user, dividend=obj)


class DividendInline(ReadOnlyInline):
    model = Dividend
    fk_name = "client"
    fields = readonly_fields = (
        "pay_date",
        "ex_date",
        "portfolio_name",
        "asset",
        "gross_shown",
        "withholding_tax_shown",
        "cash",
    )
    verbose_name_plural = f"Latest {ReadOnlyInline.max_rows} dividends"
    gross_shown = money_column("gross")
    withholding_tax_shown = money_column("withholding_tax")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Dividend]:
        return super().get_queryset(request).select_related("portfolio", "asset", "cash")

    @admin.display(description="Portfolio")
    def portfolio_name(self, obj: Dividend) -> str:
        return obj.portfolio.name


add_client_inline(AllocationInline)
add_client_inline(DividendInline)
add_client_panel(client_valuation_panel)
add_client_panel(client_income_panel)
add_client_panel(client_record_panel)
add_index_panel(dashboard_panel)


@admin.register(UnitHold)
class UnitHoldAdmin(ReadOnlyAdminMixin, ClientScopedAdminMixin, admin.ModelAdmin):
    """Read-only: unit holds are placed, resized and released by their holder through `holdings.holds` (a sell
    order holds the units it may sell); the list shows what is on hold, scoped as every client's rows are. The
    quantity is in the units of `as_of` (a later split scales it)."""

    list_display = ["reference", "client", "portfolio", "asset", "quantity_shown", "as_of", "created_at"]
    list_select_related = ["client", "portfolio__client", "asset"]
    search_fields = ["reference"]
    quantity_shown = number_column("quantity", description="quantity")
    readonly_fields = ["quantity_shown"]
