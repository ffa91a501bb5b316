from typing import Any, ClassVar

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from accounts.roles import sees_all_clients
from portfolio_site.admin_utils import ScopedAdminMixin, ServiceAdminMixin

from . import services
from .models import Client


class ClientScopedAdminMixin(ScopedAdminMixin):
    """For models that belong to a client: the client picker offers only clients the user may see."""

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "client":
            kwargs["queryset"] = Client.objects.visible_to(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)  # type: ignore[misc]


@admin.register(Client)
class ClientAdmin(ServiceAdminMixin, ScopedAdminMixin, admin.ModelAdmin):
    list_display = ["name", "email", "advisor", "base_currency", "is_active", "created_at"]
    # Only the advisors of clients the user sees: the plain filter would list every member of staff.
    list_filter = ["is_active", "base_currency", ("advisor", admin.RelatedOnlyFieldListFilter)]
    list_select_related = ["advisor"]
    search_fields = ["name", "email", "phone"]
    autocomplete_fields = ["advisor"]
    readonly_fields = ["created_at", "updated_at"]
    # Other apps add their read-only inlines (allocations, transactions) with `add_client_inline`,
    # so that this app never imports them.
    inlines: ClassVar[list[Any]] = []

    def get_readonly_fields(self, request: HttpRequest, obj: Client | None = None) -> list[str]:
        # An advisor takes on clients for themselves (client_create makes them the advisor) and may not look
        # up other staff, so the advisor picker is for those who see every client.
        fields = list(super().get_readonly_fields(request, obj))
        if not sees_all_clients(request.user):
            fields.append("advisor")
        return fields

    def save_model(self, request: HttpRequest, obj: Client, form: Any, change: bool) -> None:
        data = {name: form.cleaned_data[name] for name in form.changed_data} if change else form.cleaned_data
        if change:
            services.client_update(actor=request.user, client=obj, **data)
        else:
            created = services.client_create(actor=request.user, **data)
            obj.pk = created.pk

    def delete_model(self, request: HttpRequest, obj: Client) -> None:
        services.client_delete(actor=request.user, client=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Client]) -> None:
        for client in queryset:
            services.client_delete(actor=request.user, client=client)


def add_client_inline(inline: type[admin.options.InlineModelAdmin]) -> None:
    ClientAdmin.inlines = [*ClientAdmin.inlines, inline]
