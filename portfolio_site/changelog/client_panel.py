"""The client page's "recent changes": the latest changes of the client and the rows it owns, from the change
history, with a link to all of them in the history changelist."""

from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.http import urlencode

from clients.models import Client

from .selectors import Filters, changes_page

RECENT_CHANGES = 10


def client_changes_panel(request: HttpRequest, client: Client) -> str:
    """Empty for staff who may not read the history; otherwise scoped as the changelist is (the client page only
    calls panels with a client the viewer may see, and each source is scoped again by the selector)."""
    if not request.user.has_perm("changelog.view_change"):
        return ""
    page = changes_page(user=request.user, filters=Filters(client_id=client.pk), offset=0, limit=RECENT_CHANGES)
    changelist = reverse("admin:changelog_change_changelist")
    context = {
        "entries": page.entries,
        "count": page.count,
        "all_url": f"{changelist}?{urlencode({'client': client.pk})}",
    }
    return render_to_string("admin/changelog/client_changes.html", context, request=request)
