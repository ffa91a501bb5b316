from typing import Any

from django.contrib import admin
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest

from clients.admin import ClientScopedAdminMixin, add_client_inline
from portfolio_site.admin_utils import ReadOnlyInline, ServiceAdminMixin

from . import services
from .models import Allocation, Asset, Price


def _changes(form: Any) -> dict[str, Any]:
    return {name: form.cleaned_data[name] for name in form.changed_data}


@admin.register(Asset)
class AssetAdmin(ServiceAdminMixin, admin.ModelAdmin):
    list_display = ["ticker", "exchange", "name", "asset_type", "currency", "isin"]
    list_filter = ["asset_type", "currency", "exchange"]
    search_fields = ["ticker", "name", "isin"]
    readonly_fields = ["created_at", "updated_at"]

    def save_model(self, request: HttpRequest, obj: Asset, form: Any, change: bool) -> None:
        if change:
            services.asset_update(asset=obj, **_changes(form))
        else:
            obj.pk = services.asset_create(**form.cleaned_data).pk

    def delete_model(self, request: HttpRequest, obj: Asset) -> None:
        services.asset_delete(asset=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Asset]) -> None:
        for asset in queryset:
            services.asset_delete(asset=asset)


@admin.register(Price)
class PriceAdmin(ServiceAdminMixin, admin.ModelAdmin):
    list_display = ["asset", "date", "close"]
    list_filter = ["date"]
    list_select_related = ["asset"]
    search_fields = ["asset__ticker", "asset__name"]
    autocomplete_fields = ["asset"]
    date_hierarchy = "date"
    readonly_fields = ["created_at", "updated_at"]
    show_full_result_count = False

    def save_model(self, request: HttpRequest, obj: Price, form: Any, change: bool) -> None:
        if change:
            services.price_update(price=obj, **_changes(form))
        else:
            obj.pk = services.price_create(**form.cleaned_data).pk

    def delete_model(self, request: HttpRequest, obj: Price) -> None:
        services.price_delete(price=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Price]) -> None:
        for price in queryset:
            services.price_delete(price=price)


@admin.register(Allocation)
class AllocationAdmin(ServiceAdminMixin, ClientScopedAdminMixin, admin.ModelAdmin):
    list_display = ["date", "client", "asset", "kind", "quantity", "price", "fees", "settlement"]
    list_filter = ["kind", "date"]
    list_select_related = ["client", "asset", "settlement"]
    search_fields = ["client__name", "client__email", "asset__ticker", "notes"]
    autocomplete_fields = ["client", "asset"]
    date_hierarchy = "date"
    readonly_fields = ["settlement", "created_at", "updated_at"]
    show_full_result_count = False

    def save_model(self, request: HttpRequest, obj: Allocation, form: Any, change: bool) -> None:
        if change:
            services.allocation_update(actor=request.user, allocation=obj, **_changes(form))
        else:
            obj.pk = services.allocation_create(actor=request.user, **form.cleaned_data).pk

    def delete_model(self, request: HttpRequest, obj: Allocation) -> None:
        services.allocation_delete(actor=request.user, allocation=obj)

    @transaction.atomic
    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Allocation]) -> None:
        for allocation in queryset.order_by("pk"):
            services.allocation_delete(actor=request.user, allocation=allocation)


class AllocationInline(ReadOnlyInline):
    model = Allocation
    fields = readonly_fields = ("date", "asset", "kind", "quantity", "price", "fees", "settlement")
    verbose_name_plural = f"Latest {ReadOnlyInline.max_rows} allocations"

    def get_queryset(self, request: HttpRequest) -> QuerySet[Allocation]:
        return super().get_queryset(request).select_related("asset", "settlement")


add_client_inline(AllocationInline)
