"""The history changelist: every change the viewer may see, across the tracked models, filterable.

One page for auditors (and every role, each within what they may see): when, who, through which door, which object,
what changed. Its entries come from each model's historical table and the import batches (selectors.py), so the
page is drawn here rather than by Django's ChangeList, which reads one table.
"""

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path

from clients.admin import add_client_changes_panel
from portfolio_site.history import Door

from .client_panel import client_changes_panel
from .models import Change
from .selectors import Filters, changes_page, sources

PER_PAGE = 50


class ChangeFilterForm(forms.Form):
    model = forms.ChoiceField(required=False, label="Model")
    user = forms.EmailField(required=False, label="User (email)")
    door = forms.ChoiceField(required=False, choices=[("", "Any door"), *Door.choices], label="Door")
    since = forms.DateField(required=False, label="From", widget=forms.DateInput(attrs={"type": "date"}))
    until = forms.DateField(required=False, label="To", widget=forms.DateInput(attrs={"type": "date"}))
    # Set by the client page's "recent changes" link; the entries are scoped whatever id is given.
    client = forms.IntegerField(required=False, min_value=1, widget=forms.HiddenInput)

    def __init__(self, *args: Any, models: dict[str, str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        model_field = self.fields["model"]
        assert isinstance(model_field, forms.ChoiceField)
        model_field.choices = [("", "Every model"), *models.items()]

    def filters(self) -> Filters:
        data = self.cleaned_data if self.is_valid() else {}
        return Filters(
            model=data.get("model") or "",
            user_email=data.get("user") or "",
            door=data.get("door") or "",
            since=data.get("since"),
            until=data.get("until"),
            client_id=data.get("client"),
        )


@admin.register(Change)
class ChangeAdmin(admin.ModelAdmin):
    """Read-only: the history is a record. Opened with `changelog.view_change` (every role, by migration)."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        # Only the list: there is no Change row to open (each entry links to its object's own history page).
        name = f"{self.opts.app_label}_{self.opts.model_name}_changelist"
        return [path("", self.admin_site.admin_view(self.changelist_view), name=name)]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        form = ChangeFilterForm(request.GET or None, models=sources(request.user))
        filters = form.filters()
        number = _page_number(request)
        page = changes_page(user=request.user, filters=filters, offset=(number - 1) * PER_PAGE, limit=PER_PAGE)
        paginator = Paginator(range(page.count), PER_PAGE)
        page_obj = paginator.get_page(number)
        query = request.GET.copy()
        query.pop("p", None)
        context = {
            **self.admin_site.each_context(request),
            "title": "Change history",
            "opts": self.opts,
            "form": form,
            "entries": page.entries,
            "count": page.count,
            "page_obj": page_obj,
            "page_range": paginator.get_elided_page_range(page_obj.number),
            "query": query.urlencode(),
            **(extra_context or {}),
        }
        return TemplateResponse(request, "admin/changelog/change_list.html", context)


def _page_number(request: HttpRequest) -> int:
    try:
        return max(1, int(request.GET.get("p", "1")))
    except ValueError:
        return 1


add_client_changes_panel(client_changes_panel)
