from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from django.contrib import admin, messages
from django.contrib.admin.views.main import SEARCH_VAR
from django.db import models
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import urlencode
from django.utils.text import smart_split, unescape_string_literal

from portfolio_site.admin_utils import (
    SERVICE_ERRORS,
    ReadOnlyInline,
    ScopedAdminMixin,
    ServiceAdminMixin,
    ServiceRefusal,
)
from portfolio_site.history_admin import TrackedHistoryAdmin

from . import services
from .models import Client, Portfolio
from .scope import ClientScope

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise

# A section another app adds to a client's change page: given the request and the client (one the user may see),
# its HTML, already escaped (rendered by a template), or "" to show nothing.
ClientPanel = Callable[[HttpRequest, Client], str]


def _changes(form: Any) -> dict[str, Any]:
    return {name: form.cleaned_data[name] for name in form.changed_data}


class ClientScopedAdminMixin(ScopedAdminMixin):
    """For models that belong to a client (and one of its portfolios): the pickers offer only clients the user may
    see, and only their open portfolios (a closed one takes no new movement)."""

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "client":
            kwargs["queryset"] = Client.objects.visible_to(request.user)
        elif db_field.name == "portfolio":
            kwargs["queryset"] = movement_portfolios(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]


class OwnerIndexedSearchMixin:
    """The search box of a large list of a client's movements, answered by indexes instead of a scan.

    Django's search ORs `icontains` over every search field through joins, which reads every row of a million-row
    table. Here each term is looked up first in the small tables (clients by name or email, portfolios by name or
    account number: a few thousand rows) and the movements are then fetched by those owners' indexes, OR the
    model's own exact matches (`exact_search`: an indexed reference, an asset's ticker). Free-text notes are not
    searched: no index can answer a substring of them.
    """

    # What the search reads (Django shows the box when these are set); `get_search_results` below answers it.
    search_fields: ClassVar[list[str] | tuple[str, ...]] = (
        "client__name",
        "client__email",
        "portfolio__name",
        "portfolio__account_number",
    )
    search_help_text: ClassVar["StrOrPromise | None"] = (
        "A client's name or email, a portfolio's name or account number, or an exact reference."
    )

    def exact_search(self, term: str) -> Q:
        """The model's own matches for a term, each served by an index (none by default)."""
        return Q(pk__in=[])

    def get_search_results(self, request: HttpRequest, queryset: QuerySet[Any], search_term: str) -> Any:
        for term in smart_split(search_term):
            if term.startswith(('"', "'")) and term[0] == term[-1]:
                term = unescape_string_literal(term)
            # Only the owners the user sees: the same scope as the list, and fewer ids for an advisor.
            clients = _owner_ids(
                Client.objects.visible_to(request.user).filter(Q(name__icontains=term) | Q(email__icontains=term))
            )
            portfolios = _owner_ids(Portfolio.objects.visible_to(request.user).filter(portfolio_named(term)))
            queryset = queryset.filter(Q(client__in=clients) | Q(portfolio__in=portfolios) | self.exact_search(term))
        return queryset, False


def portfolio_named(term: str) -> Q:
    """The portfolios whose name or account number contains `term`, as the lists' search and filter find them."""
    return Q(name__icontains=term) | Q(account_number__icontains=term)


# Owners a search term may name by id; past it the term is not selective, and the owners go in as a subquery.
MAX_SEARCH_OWNERS = 200


def _owner_ids(owners: QuerySet[Any]) -> Any:
    """A few owners as a list of ids, which PostgreSQL looks up in the movements' owner indexes (a bitmap of their
    rows); many as a subquery, which it checks row by row as it reads the newest rows first, finding a page soon
    because so many rows match. Either alone is slow in the other case."""
    ids = list(owners.values_list("pk", flat=True)[: MAX_SEARCH_OWNERS + 1])
    return ids if len(ids) <= MAX_SEARCH_OWNERS else owners.values("pk")


def movement_portfolios(user: Any, *, keeping: int | None = None) -> QuerySet[Portfolio]:
    """The portfolios a user may record a movement in: those they see, still open (and the one `keeping` names,
    a movement's own). The services refuse the rest anyway; offering them would only invite a refusal."""
    usable = Q(closed_on__isnull=True) | Q(pk=keeping) if keeping is not None else Q(closed_on__isnull=True)
    return Portfolio.objects.visible_to(user).filter(usable).select_related("client")


class PortfolioListFilter(admin.SimpleListFilter):
    """Filters a list of movements by portfolio, offering only portfolios the user may see.

    Firm-wide staff may see thousands, so the choices are capped and follow the search box (client, portfolio
    or account number): search first, then pick the portfolio.
    """

    title = "portfolio"
    parameter_name = "portfolio"
    max_choices = 50

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        portfolios = Portfolio.objects.visible_to(request.user).select_related("client")
        term = request.GET.get(SEARCH_VAR, "").strip()
        if term:
            portfolios = portfolios.filter(portfolio_named(term) | Q(client__name__icontains=term))
        rows = list(portfolios.order_by("client__name", "name", "pk")[: self.max_choices + 1])
        if len(rows) > self.max_choices:
            rows = rows[: self.max_choices]
            self.title = f"portfolio (first {self.max_choices}: search to narrow)"
        choices = [(str(portfolio.pk), str(portfolio)) for portfolio in rows]
        selected = self._selected_id()
        if selected is not None and str(selected) not in dict(choices):
            # Keep the chosen one listed (and highlighted) even when the search no longer matches it.
            chosen = Portfolio.objects.visible_to(request.user).select_related("client").filter(pk=selected).first()
            if chosen is not None:
                choices.insert(0, (str(chosen.pk), str(chosen)))
        return choices

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        selected = self._selected_id()
        if self.value() is None:
            return queryset
        # An id that is not a number matches nothing; the list is already scoped, so no id shows another's rows.
        return queryset.filter(portfolio_id=selected) if selected is not None else queryset.none()

    def _selected_id(self) -> int | None:
        value = self.value()
        return int(value) if value and value.isdigit() else None


class PortfolioStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("open", "Open"), ("closed", "Closed")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Portfolio]) -> QuerySet[Portfolio]:
        if self.value() == "open":
            return queryset.filter(closed_on__isnull=True)
        if self.value() == "closed":
            return queryset.filter(closed_on__isnull=False)
        return queryset


class PortfolioInline(ReadOnlyInline):
    """Read-only, each row linking to the portfolio's own page, where it is changed through the services.

    Saving portfolios from the client's form would bypass the one-call-per-write error reporting of
    ServiceAdminMixin (a refusal in the third row would surface as a 500 or a half-saved form), and on the add
    page it would collide with the "Main" portfolio `client_create` opens.
    """

    model = Portfolio
    fields = readonly_fields = (
        "name",
        "kind",
        "custodian",
        "account_number",
        "base_currency",
        "opened_on",
        "closed_on",
    )
    max_rows = 50
    verbose_name_plural = "Portfolios"


@admin.register(Client)
class ClientAdmin(ServiceAdminMixin, ScopedAdminMixin, TrackedHistoryAdmin):
    list_display = ["name", "email", "advisor", "base_currency", "is_active", "created_at"]
    # Only the advisors of clients the user sees: the plain filter would list every member of staff.
    list_filter = ["is_active", "base_currency", ("advisor", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["advisor"]
    search_fields = ["name", "email", "phone"]
    autocomplete_fields = ["advisor"]
    readonly_fields = ["created_at", "updated_at"]
    # Other apps add their inlines (allocations, dividends, transactions) with `add_client_inline`, so that this app
    # never imports them; an editable one is a ServiceInline, its rows saved through its own app's services by
    # ServiceAdminMixin.save_formset, in this page's transaction.
    inlines: ClassVar[list[Any]] = [PortfolioInline]
    # Likewise their sections of the change page (holdings: each portfolio's valuation), with `add_client_panel`.
    panels: ClassVar[list[ClientPanel]] = []
    # The "recent changes" section, below the inlines: who changed what of the client and its portfolios, lately.
    # Empty until the change history is built (issue 14's history part), which fills it with
    # `add_client_changes_panel`; a panel gets the request and a client the user may see, like the others.
    changes_panels: ClassVar[list[ClientPanel]] = []

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Client | None = None,
    ) -> HttpResponse:
        # Called with a client the scoped queryset found, so a panel never sees one the user may not.
        if obj is not None and obj.pk is not None:
            context["client_panels"] = [html for panel in self.panels if (html := panel(request, obj))]
            context["client_changes_panels"] = [html for panel in self.changes_panels if (html := panel(request, obj))]
        return super().render_change_form(request, context, add, change, form_url, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Client | None = None) -> list[str]:
        # An advisor takes on clients for themselves (client_create makes them the advisor) and may not look
        # up other staff, so the advisor picker is for those who see every client.
        fields = list(super().get_readonly_fields(request, obj))
        if ClientScope.of(request.user).names_only_themselves:
            fields.append("advisor")
        if obj is not None and request.user.has_perm("clients.add_portfolio"):
            fields.append("open_portfolio")
        return fields

    def history_record_visible(self, request: HttpRequest, record: Any) -> bool:
        # A deleted client's history: by the advisor its last record names, as the client itself was scoped.
        return ClientScope.of(request.user).allows(record)

    @admin.display(description="Portfolios")
    def open_portfolio(self, obj: Client) -> str:
        query = urlencode({"client": str(obj.pk), "base_currency": obj.base_currency})
        return format_html('<a href="{}?{}">Open another portfolio</a>', reverse("admin:clients_portfolio_add"), query)

    actions = ["deactivate_selected", "reactivate_selected"]

    @admin.action(description="Deactivate selected clients", permissions=["change"])
    def deactivate_selected(self, request: HttpRequest, queryset: QuerySet[Client]) -> None:
        self._set_active(request, queryset, active=False)

    @admin.action(description="Reactivate selected clients", permissions=["change"])
    def reactivate_selected(self, request: HttpRequest, queryset: QuerySet[Client]) -> None:
        self._set_active(request, queryset, active=True)

    def _set_active(self, request: HttpRequest, queryset: QuerySet[Client], *, active: bool) -> None:
        """Each client through `client_update`, as the change page saves it (its lock and visibility re-check),
        in key order; `response_action` holds them in one transaction, so a refusal changes none."""
        changed = 0
        for obj in queryset.filter(is_active=not active).order_by("pk"):
            try:
                services.client_update(actor=request.user, client=obj, is_active=active)
            except SERVICE_ERRORS as error:
                raise ServiceRefusal(error) from error
            changed += 1
        verb = "Reactivated" if active else "Deactivated"
        self.message_user(request, f"{verb} {changed} client(s).", messages.SUCCESS)

    def save_model(self, request: HttpRequest, obj: Client, form: Any, change: bool) -> None:
        data = _changes(form) if change else form.cleaned_data
        if change:
            services.client_update(actor=request.user, client=obj, **data)
        else:
            created = services.client_create(actor=request.user, **data)
            obj.pk = created.pk

    def delete_model(self, request: HttpRequest, obj: Client) -> None:
        services.client_delete(actor=request.user, client=obj)


@admin.register(Portfolio)
class PortfolioAdmin(ServiceAdminMixin, ClientScopedAdminMixin, TrackedHistoryAdmin):
    list_display = [
        "client",
        "name",
        "kind",
        "custodian",
        "account_number",
        "base_currency",
        "opened_on",
        "closed_on",
    ]
    list_display_links = ["name"]
    list_filter = ["kind", "base_currency", PortfolioStatusFilter]
    list_select_related = ["client"]
    search_fields = ["name", "custodian", "account_number", "client__name", "client__email"]
    autocomplete_fields = ["client"]
    readonly_fields = ["created_at", "updated_at"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Portfolio]:
        # Every page names a portfolio by its client too (autocomplete results, the change page's title).
        return super().get_queryset(request).select_related("client")

    def get_readonly_fields(self, request: HttpRequest, obj: Portfolio | None = None) -> list[str]:
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None:
            fields.append("client")  # its movements are the client's: portfolio_update refuses a move anyway
        return fields

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        return {"opened_on": timezone.localdate(), **super().get_changeform_initial_data(request)}

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Portfolio], search_term: str
    ) -> tuple[QuerySet[Portfolio], bool]:
        queryset, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        match = request.resolver_match
        if match is not None and match.url_name == "autocomplete" and request.GET.get("field_name") == "portfolio":
            # The portfolio picker of a movement's form: a closed portfolio takes no new movement.
            queryset = queryset.filter(closed_on__isnull=True)
        return queryset, may_have_duplicates

    def get_deleted_objects(
        self, objs: Sequence[Portfolio] | QuerySet[Portfolio], request: HttpRequest
    ) -> tuple[Any, ...]:
        # Django would list every transaction and allocation protecting the portfolio on the confirmation page
        # (and load them all first); a count per kind says the same, in one query each.
        protected = _movement_counts(objs)
        if protected:
            return [], {}, set(), protected
        return super().get_deleted_objects(objs, request)

    def save_model(self, request: HttpRequest, obj: Portfolio, form: Any, change: bool) -> None:
        if change:
            services.portfolio_update(actor=request.user, portfolio=obj, **_changes(form))
        else:
            obj.pk = services.portfolio_create(actor=request.user, **form.cleaned_data).pk

    def delete_model(self, request: HttpRequest, obj: Portfolio) -> None:
        services.portfolio_delete(actor=request.user, portfolio=obj)


def _movement_counts(portfolios: Iterable[Portfolio]) -> list[str]:
    """ "12 transactions", "3 allocations": the rows that protect these portfolios from deletion, found through
    the protecting foreign keys themselves so that this app names no other app's models."""
    ids = [portfolio.pk for portfolio in portfolios]
    counts = []
    for relation in Portfolio._meta.related_objects:
        if relation.on_delete is not models.PROTECT:
            continue
        related = relation.related_model._meta
        count = relation.related_model._base_manager.filter(**{f"{relation.field.name}__in": ids}).count()
        if count:
            counts.append(f"{count} {related.verbose_name if count == 1 else related.verbose_name_plural}")
    return counts


def add_client_inline(inline: type[admin.options.InlineModelAdmin]) -> None:
    ClientAdmin.inlines = [*ClientAdmin.inlines, inline]


def add_client_panel(panel: ClientPanel) -> None:
    ClientAdmin.panels = [*ClientAdmin.panels, panel]


def add_client_changes_panel(panel: ClientPanel) -> None:
    """Fills the client page's "recent changes" slot (rendered after the inlines)."""
    ClientAdmin.changes_panels = [*ClientAdmin.changes_panels, panel]
