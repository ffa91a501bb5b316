"""Admin plumbing shared by the apps: visibility scoping and reporting service errors instead of a 500."""

from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect

from portfolio_site.errors import ConflictError


def error_text(error: Exception) -> str:
    if isinstance(error, ValidationError):
        return " ".join(error.messages)
    return str(error)


class ScopedAdminMixin:
    """Applies the model's `visible_to(user)` first, as the API does, so the admin never shows more."""

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)  # type: ignore[misc]
        if hasattr(queryset, "visible_to"):
            queryset = queryset.visible_to(request.user)
        return queryset


class ServiceAdminMixin:
    """Writes go through services; a rule they enforce comes back as an error message, never a 500.

    The admin wraps the change form in a transaction, so a refused write leaves nothing behind.
    """

    def changeform_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return super().changeform_view(request, *args, **kwargs)  # type: ignore[misc]
        except (ValidationError, ConflictError, PermissionDenied) as error:
            messages.error(request, f"Not saved: {error_text(error)}")
            return HttpResponseRedirect(request.get_full_path())

    def delete_view(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return super().delete_view(request, *args, **kwargs)  # type: ignore[misc]
        except (ValidationError, ConflictError, PermissionDenied) as error:
            messages.error(request, f"Not deleted: {error_text(error)}")
            return HttpResponseRedirect(request.get_full_path())


class ReadOnlyInline(admin.TabularInline):
    """Shows the latest `max_rows` related rows, read-only, with a link to each (a client may have thousands)."""

    extra = 0
    max_rows = 20
    show_change_link = True
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        queryset = super().get_queryset(request)
        latest = queryset.order_by(*self.model._meta.ordering).values("pk")[: self.max_rows]
        # A sliced queryset cannot feed a formset; a subquery on the latest ids can.
        return queryset.filter(pk__in=latest)
