"""The admin's history pages for tracked models: simple-history's, read-only and scoped as the object is.

`TrackedHistoryAdmin` takes the place of `admin.ModelAdmin` in a tracked model's admin. Its history page lists every
change with its date, user, door and the fields changed (before → after). Two things of simple-history's own admin
are closed here:

- scoping: simple-history shows the history of an object its scoped queryset does not find (out of the viewer's
  scope, or deleted) to anyone with the view permission, and its revision page looks records up by id alone.
  Here both refuse unless the viewer may see the object now (or, once it is deleted, the client its last record
  belonged to), answering as the change page does ("does not exist", back to the index);
- writes: its revision page saves a POSTed form (a "revert") even when reverting is switched off in the template.
  A revert would write around the services' rules, so the page is read-only and refuses every POST.
"""

from typing import Any

from django.contrib.admin.utils import unquote
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from simple_history.admin import SimpleHistoryAdmin

from portfolio_site.scoping import owner_model, owner_path


class TrackedHistoryAdmin(SimpleHistoryAdmin):
    history_list_display = ["door"]
    history_list_per_page = 50

    def door(self, record: Any) -> str:
        return str(record.get_history_door_display() or "—")

    def _visible(self, request: HttpRequest, object_id: str) -> bool:
        try:
            pk = self.model._meta.pk.to_python(unquote(object_id))  # type: ignore[union-attr]
        except ValidationError:
            return False
        if self.get_queryset(request).filter(pk=pk).exists():
            return True
        if owner_path(self.model) is None:
            return True  # not client-owned: the view permission (checked by simple-history) is the whole rule
        if self.model._default_manager.filter(pk=pk).exists():
            return False  # it exists, out of the viewer's scope
        last = self.model.history.filter(id=pk).order_by("-history_date", "-history_id").first()  # type: ignore[attr-defined]
        return last is not None and self.history_record_visible(request, last)

    def history_record_visible(self, request: HttpRequest, record: Any) -> bool:
        """Whether the viewer may see the history of a deleted client-owned object, by the client its last record
        names (the owner model's admin overrides this: its records name no client but themselves)."""
        client_id = getattr(record, "client_id", None)
        owner = owner_model()._default_manager
        return client_id is not None and owner.visible_to(request.user).filter(pk=client_id).exists()  # type: ignore[attr-defined]

    def history_view(
        self, request: HttpRequest, object_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if not self._visible(request, object_id):
            # As the change page answers an object out of scope: "does not exist", back to the index.
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        return super().history_view(request, object_id, extra_context)  # type: ignore[no-any-return]

    def history_form_view(
        self, request: HttpRequest, object_id: str, version_id: str, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        if request.method != "GET":
            return HttpResponseNotAllowed(["GET"])
        if not self._visible(request, object_id):
            return self._get_obj_does_not_exist_redirect(request, self.opts, object_id)
        return super().history_form_view(request, object_id, version_id, extra_context)  # type: ignore[no-any-return]
