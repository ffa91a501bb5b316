from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminUserCreationForm, UserChangeForm
from django.http import HttpRequest

from portfolio_site.admin_utils import ServiceAdminMixin

from . import services
from .models import User


class UserCreationForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email", "full_name")


class UserEditForm(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"
        field_classes: dict[str, type[forms.Field]] = {}


@admin.register(User)
class UserAdmin(ServiceAdminMixin, DjangoUserAdmin):
    form = UserEditForm
    add_form = UserCreationForm
    ordering = ["email"]
    list_display = ["email", "full_name", "is_active", "is_staff", "is_superuser", "is_verified", "last_login"]
    list_filter = ["is_active", "is_staff", "is_superuser", "is_verified", "groups"]
    search_fields = ["email", "full_name"]
    readonly_fields = ["last_login", "last_login_ip", "created_at", "updated_at"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal info", {"fields": ("full_name",)}),
        (
            "Permissions",
            {"fields": ("is_active", "is_verified", "is_staff", "is_superuser", "groups", "user_permissions")},
        ),
        ("Activity", {"fields": ("last_login", "last_login_ip", "created_at", "updated_at")}),
    )
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("email", "full_name", "usable_password", "password1", "password2")}),
    )

    # Many-to-many fields are saved by the form after save_model (save_related), as Django does.
    M2M_FIELDS = frozenset({"groups", "user_permissions"})

    def save_model(self, request: HttpRequest, obj: User, form: Any, change: bool) -> None:
        data = form.cleaned_data
        if change:
            fields = {name: data[name] for name in form.changed_data if name not in self.M2M_FIELDS}
            services.user_update(user=obj, **fields)
        else:
            # AdminUserCreationForm has already validated the passwords and says whether one is to be set.
            password = data["password1"] if data.get("set_usable_password", True) else None
            created = services.user_create(email=data["email"], full_name=data.get("full_name", ""), password=password)
            obj.pk = created.pk
            obj._state.adding = False
