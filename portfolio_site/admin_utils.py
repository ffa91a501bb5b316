"""Admin plumbing shared by the apps: visibility scoping and reporting service errors instead of a 500."""

import functools
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from django.contrib import admin, messages
from django.contrib.admin.options import IS_POPUP_VAR, IncorrectLookupParameters
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import router, transaction
from django.db.models import Model, ProtectedError, QuerySet, RestrictedError
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from portfolio_site.errors import ConflictError
from portfolio_site.imports.exporting import csv_lines
from portfolio_site.imports.formats import ImportFormat, format_for_model
from portfolio_site.scoping import check_scoped, scoped

# A delete the database refuses (a protected foreign key) is reported like a service's refusal: the admin's own
# check before deleting catches it first, but a row referenced in between would otherwise be a 500.
SERVICE_ERRORS = (ValidationError, ConflictError, PermissionDenied, ProtectedError, RestrictedError)
STILL_REFERENCED = "It is still referenced by other records and cannot be deleted."


def error_text(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return " ".join(error.messages)
    if isinstance(error, ProtectedError | RestrictedError):
        return STILL_REFERENCED  # Django's own text lists every referencing row: thousands, for a ledger
    return str(error)


class ExportAdminMixin:
    """Every list whose model is a kind of the import engine offers its rows as that kind's CSV file: the selected
    rows (an action) or the whole filtered list (a link, streamed). Both write through `exporting.csv_lines`, the
    code `manage.py export` runs, so cells are escaped alike, and both start from the admin's own queryset, so a
    user exports only the rows they may see (ids of others' rows in a crafted POST match nothing)."""

    def export_format(self) -> type[ImportFormat] | None:
        return format_for_model(self.model)  # type: ignore[attr-defined]

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions: dict[str, Any] = super().get_actions(request)  # type: ignore[misc]
        # Django offers no actions on popups or when a page turns them off; nor does the export.
        if self.actions is None or IS_POPUP_VAR in request.GET:  # type: ignore[attr-defined]
            return actions
        if self.export_format() is not None and self.has_view_permission(request):  # type: ignore[attr-defined]
            action = self.get_action("export_selected")  # type: ignore[attr-defined]
            actions[action[1]] = action
        return actions

    @admin.action(description="Export selected %(verbose_name_plural)s to CSV (the import's columns)")
    def export_selected(self, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponseBase:
        return self.export_response(queryset)

    def export_response(self, queryset: QuerySet[Any]) -> HttpResponseBase:
        format_class = self.export_format()
        assert format_class is not None
        # Only the ids are taken from the list's query: its ordering, joins and DISTINCT are the page's, while the
        # file's order is the kind's (movements by date, so that the file imports back).
        rows = self.model._default_manager.filter(pk__in=queryset.values("pk"))  # type: ignore[attr-defined]
        stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
        response = StreamingHttpResponse(csv_lines(format_class, rows), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{format_class.kind}-{stamp}.csv"'
        return response

    def export_view(self, request: HttpRequest) -> HttpResponseBase:
        """The whole list as filtered, searched and scoped on the changelist (its query string), streamed."""
        if self.export_format() is None or not self.has_view_permission(request):  # type: ignore[attr-defined]
            raise PermissionDenied
        try:
            changelist = self.get_changelist_instance(request)  # type: ignore[attr-defined]
        except IncorrectLookupParameters:
            return HttpResponseRedirect(self._changelist_url())
        return self.export_response(changelist.queryset)

    def _changelist_url(self) -> str:
        opts = self.model._meta  # type: ignore[attr-defined]
        return reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist")

    def get_urls(self) -> list[URLPattern]:
        opts = self.model._meta  # type: ignore[attr-defined]
        export = path(
            "export/",
            self.admin_site.admin_view(self.export_view),  # type: ignore[attr-defined]
            name=f"{opts.app_label}_{opts.model_name}_export",
        )
        return [export, *super().get_urls()]  # type: ignore[misc]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if self.export_format() is not None and self.has_view_permission(request):  # type: ignore[attr-defined]
            opts = self.model._meta  # type: ignore[attr-defined]
            extra_context = {
                **(extra_context or {}),
                "export_url": reverse(f"admin:{opts.app_label}_{opts.model_name}_export"),
            }
        return super().changelist_view(request, extra_context)  # type: ignore[misc]


class ScopedAdminMixin(ExportAdminMixin):
    """Applies the model's `visible_to(user)` first, unconditionally, as the API does, so the admin never shows
    more: a model whose QuerySet cannot be scoped is refused with ImproperlyConfigured. Its lists export what they
    show (ExportAdminMixin), through the same scoped queryset."""

    def __init__(self, model: type[Model], admin_site: Any) -> None:
        # Refused when registered (at startup, by the admin's autodiscovery), not on the first page someone opens.
        check_scoped(model._default_manager.all())
        super().__init__(model, admin_site)  # type: ignore[call-arg]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return scoped(super().get_queryset(request), request.user)  # type: ignore[misc]


class ServiceRefusal(Exception):
    """A service refused a write the admin asked for; carries the service's own error, and the prefix of the inline
    form whose row it refused (when an inline row was being saved)."""

    def __init__(self, error: Exception, *, row: str | None = None) -> None:
        super().__init__(error_text(error))
        self.error = error
        self.row = row


@runtime_checkable
class ServiceInline(Protocol):
    """An inline whose rows are written by its own app's services: the parent's admin (which may not import that
    app) saves each row of its formset through these, as `save_model`/`delete_model` save a page's object."""

    def save_row(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None: ...

    def delete_row(self, request: HttpRequest, obj: Any) -> None: ...


class ServiceInlineMixin:
    """Makes an inline a ServiceInline for ServiceAdminMixin.save_formset: its formsets know their inline, and a row
    the services refused on the first try of a POST carries the refusal as its form's error (see
    ServiceAdminMixin.changeform_view)."""

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        formset = super().get_formset(request, obj, **kwargs)  # type: ignore[misc]
        attrs = {"service_inline": self, "refused_rows": getattr(request, REFUSED_ROWS, {})}
        return type(formset.__name__, (RefusedRowsFormSetMixin, formset), attrs)

    def save_row(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        raise NotImplementedError

    def delete_row(self, request: HttpRequest, obj: Any) -> None:
        raise NotImplementedError


class RefusedRowsFormSetMixin:
    refused_rows: dict[str, str]

    def clean(self) -> None:
        super().clean()  # type: ignore[misc]
        refused_deletes = []
        for form in self.forms:  # type: ignore[attr-defined]
            if form.prefix not in self.refused_rows:
                continue
            if self.can_delete and self._should_delete_form(form):  # type: ignore[attr-defined]
                refused_deletes.append(self.refused_rows[form.prefix])  # a deleted form's errors are not shown
            else:
                form.add_error(None, self.refused_rows[form.prefix])
        if refused_deletes:
            raise ValidationError(refused_deletes)


# The request attribute naming the rows refused on a POST's first try: {form prefix: the refusal's words}.
REFUSED_ROWS = "_service_refused_rows"


def _reporting_refusals(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except SERVICE_ERRORS as error:
            raise ServiceRefusal(error) from error

    return wrapper


class ServiceAdminMixin(ExportAdminMixin):
    """Writes go through services; a rule they enforce comes back as an error message, never a 500. Its lists export
    what they show (ExportAdminMixin), as scoped lists do: reference data (assets, prices) is not scoped.

    Only errors raised by the admin's write methods (`save_model`, `delete_model`, `delete_queryset`) are
    reported as messages: the admin's own permission checks still answer 403 (catching those too would
    redirect a user without permission to the same page forever). Change forms and actions run in a
    transaction, so a refused write leaves nothing behind.
    """

    WRITE_METHODS: tuple[str, ...] = ("save_model", "delete_model", "delete_queryset")

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in cls.WRITE_METHODS:
            if name in cls.__dict__:
                setattr(cls, name, _reporting_refusals(cls.__dict__[name]))

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        """The delete action deletes as the change page does: through `delete_model` (its service), row by row in
        key order, so that two bulk deletes lock alike; `response_action` runs it in one transaction, so a refusal
        deletes nothing."""
        for obj in queryset.order_by("pk"):
            self.delete_model(request, obj)  # type: ignore[attr-defined]

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        """A ServiceInline's rows through its services, one call per row: deleted rows first, then changed ones
        (both in key order), then new ones (in the page's order). A refusal names its row's form and undoes the
        whole page, the main form's save included (`changeform_view` runs in one transaction)."""
        inline = getattr(formset, "service_inline", None)
        if not isinstance(inline, ServiceInline):
            super().save_formset(request, form, formset, change)  # type: ignore[misc]
            return
        formset.save(commit=False)  # fills deleted_objects, changed_objects and new_objects without writing
        forms = {id(row_form.instance): row_form for row_form in formset.forms}
        writes: list[tuple[Any, Callable[[], None]]] = []
        for obj in sorted(formset.deleted_objects, key=lambda row: row.pk):
            writes.append((obj, functools.partial(inline.delete_row, request, obj)))
        for obj, _ in sorted(formset.changed_objects, key=lambda pair: pair[0].pk):
            writes.append((obj, functools.partial(inline.save_row, request, obj, forms[id(obj)], True)))
        for obj in formset.new_objects:
            writes.append((obj, functools.partial(inline.save_row, request, obj, forms[id(obj)], False)))
        for obj, write in writes:
            try:
                write()
            except SERVICE_ERRORS as error:
                raise ServiceRefusal(error, row=forms[id(obj)].prefix) from error

    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return super().changeform_view(request, *args, **kwargs)  # type: ignore[misc]
        except ServiceRefusal as refusal:
            # The transaction is rolled back by now: nothing of the POST was saved.
            messages.error(request, f"Not saved: {refusal}")
            if refusal.row is None or request.method != "POST":
                return HttpResponseRedirect(request.get_full_path())
            # An inline row refused: the page again, from the same POST, that row's form showing why (its
            # formset's validation adds the error, so nothing is saved on this second try).
            setattr(request, REFUSED_ROWS, {refusal.row: str(refusal)})
        try:
            return super().changeform_view(request, *args, **kwargs)  # type: ignore[misc]
        except ServiceRefusal:
            return HttpResponseRedirect(request.get_full_path())

    def delete_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return super().delete_view(request, *args, **kwargs)  # type: ignore[misc]
        except ServiceRefusal as refusal:
            messages.error(request, f"Not deleted: {refusal}")
            return HttpResponseRedirect(request.get_full_path())

    def response_action(self, request: HttpRequest, queryset: QuerySet[Any], *args: Any) -> HttpResponse | None:
        try:
            with transaction.atomic(using=router.db_for_write(self.model)):  # type: ignore[attr-defined]
                return super().response_action(request, queryset, *args)  # type: ignore[misc]
        except ServiceRefusal as refusal:
            messages.error(request, f"Not done: {refusal}")
            return HttpResponseRedirect(request.get_full_path())


class LatestRowsInlineFormSet(BaseInlineFormSet):
    """The parent's latest `max_rows` rows (in the model's ordering), each knowing its parent without a query."""

    max_rows = 20

    def get_queryset(self) -> QuerySet[Any]:
        if not hasattr(self, "_latest_rows"):
            queryset = super().get_queryset()
            # A sliced queryset cannot feed a formset; a subquery on the latest ids of this parent can.
            self._latest_rows = queryset.filter(pk__in=queryset.values("pk")[: self.max_rows])
        return self._latest_rows

    def _construct_form(self, i: int, **kwargs: Any) -> Any:
        form = super()._construct_form(i, **kwargs)  # type: ignore[misc]
        setattr(form.instance, self.fk.name, self.instance)
        return form


class ReadOnlyAdminMixin:
    """Rows written only by services: anyone with the view permission looks, no one adds, edits or deletes."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class LatestRowsInline(admin.TabularInline):
    """Shows the latest `max_rows` related rows, with a link to each (a client may have thousands)."""

    extra = 0
    max_rows = 20
    show_change_link = True
    formset = LatestRowsInlineFormSet

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        formset = super().get_formset(request, obj, **kwargs)
        formset.max_rows = self.max_rows  # type: ignore[attr-defined]
        return formset


class ReadOnlyInline(ReadOnlyAdminMixin, LatestRowsInline):
    """The latest `max_rows` related rows, read-only."""

    can_delete = False
