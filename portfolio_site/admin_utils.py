"""Admin plumbing shared by the apps: visibility scoping and reporting service errors instead of a 500."""

import functools
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import router, transaction
from django.db.models import Model, ProtectedError, QuerySet, RestrictedError
from django.forms.models import BaseInlineFormSet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from portfolio_site.errors import ConflictError
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


class ScopedAdminMixin:
    """Applies the model's `visible_to(user)` first, unconditionally, as the API does, so the admin never shows
    more: a model whose QuerySet cannot be scoped is refused with ImproperlyConfigured."""

    def __init__(self, model: type[Model], admin_site: Any) -> None:
        # Refused when registered (at startup, by the admin's autodiscovery), not on the first page someone opens.
        check_scoped(model._default_manager.all())
        super().__init__(model, admin_site)  # type: ignore[call-arg]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return scoped(super().get_queryset(request), request.user)  # type: ignore[misc]


class ServiceRefusal(Exception):
    """A service refused a write the admin asked for; carries the service's own error."""

    def __init__(self, error: Exception) -> None:
        super().__init__(error_text(error))
        self.error = error


def _reporting_refusals(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except SERVICE_ERRORS as error:
            raise ServiceRefusal(error) from error

    return wrapper


class ServiceAdminMixin:
    """Writes go through services; a rule they enforce comes back as an error message, never a 500.

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

    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return super().changeform_view(request, *args, **kwargs)  # type: ignore[misc]
        except ServiceRefusal as refusal:
            messages.error(request, f"Not saved: {refusal}")
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


class ReadOnlyInline(ReadOnlyAdminMixin, admin.TabularInline):
    """Shows the latest `max_rows` related rows, read-only, with a link to each (a client may have thousands)."""

    extra = 0
    max_rows = 20
    show_change_link = True
    can_delete = False
    formset = LatestRowsInlineFormSet

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        formset = super().get_formset(request, obj, **kwargs)
        formset.max_rows = self.max_rows  # type: ignore[attr-defined]
        return formset
