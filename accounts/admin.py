from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminPasswordChangeForm, AdminUserCreationForm, UserChangeForm
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse

from portfolio_site.admin_large import LargeTableAdminMixin
from portfolio_site.admin_utils import ReadOnlyAdminMixin, ReadOnlyInline, ServiceAdminMixin, ServiceInlineMixin
from portfolio_site.history_admin import TrackedHistoryAdmin

from . import services
from .models import ExternalIdentity, LoginSession, SecurityEvent, User
from .services.events import ClientInfo
from .services.identities import (
    SUPABASE,
    identity_issuer,
    identity_link,
    identity_subject_normalize,
    identity_unlink,
)
from .services.sessions import session_revoke
from .web import client_info

# The client of the admin request being served, for the audit records of writes made by forms that only get
# the submitted data (Django's password change form). A context variable: each request, thread or task its own.
_admin_client: ContextVar[ClientInfo | None] = ContextVar("admin_client", default=None)


@contextmanager
def _serving(request: HttpRequest) -> Iterator[None]:
    token = _admin_client.set(client_info(request))
    try:
        yield
    finally:
        _admin_client.reset(token)


class UserCreationForm(AdminUserCreationForm):
    class Meta:
        model = User
        fields = ("email", "full_name")


class UserEditForm(UserChangeForm):
    class Meta:
        model = User
        fields = "__all__"
        field_classes: dict[str, type[forms.Field]] = {}


class PasswordChangeForm(AdminPasswordChangeForm):
    """Django's admin password form, writing through `user_set_password`: validated, audited, sessions ended.

    Disabling password-based login is not offered: it would end no session and leave no audit record.
    """

    NO_DISABLING = "Password-based login cannot be disabled here; deactivate the user instead."

    def __init__(self, user: User, *args: Any, **kwargs: Any) -> None:
        super().__init__(user, *args, **kwargs)
        self.fields.pop("usable_password", None)
        self.fields["password1"].required = True
        self.fields["password2"].required = True

    def clean(self) -> dict[str, Any] | None:
        if "unset-password" in self.data:
            raise forms.ValidationError(self.NO_DISABLING, code="no_disabling")
        return super().clean()

    def save(self, commit: bool = True) -> User:
        client = _admin_client.get() or ClientInfo()
        services.user_set_password(user=self.user, password=self.cleaned_data["password1"], client=client)
        return self.user


class LoginSessionInline(ReadOnlyInline):
    model = LoginSession
    verbose_name_plural = "Login sessions (latest 20)"
    fields = ("created_at", "ip", "user_agent", "last_seen_at", "expires_at", "revoked_at", "end_reason")
    readonly_fields = fields


class ExternalIdentityForm(forms.ModelForm):
    class Meta:
        model = ExternalIdentity
        fields = ("provider", "subject")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("provider") and data.get("subject"):
            try:
                data["subject"] = identity_subject_normalize(provider=data["provider"], subject=data["subject"])
                self.instance.subject = data["subject"]
                self.instance.issuer = identity_issuer(data["provider"])
            except forms.ValidationError as error:
                self.add_error("subject", error.messages)
        return data


class ExternalIdentityInline(ServiceInlineMixin, admin.TabularInline):
    """The user's accounts at identity providers (a Supabase user id): a sign-in through a provider reaches this
    user only through a link made here (or by `manage.py link_identity`), by a superuser or a holder of the
    permission; a link is added or deleted, never edited, and each change is a security event."""

    model = ExternalIdentity
    form = ExternalIdentityForm
    fk_name = "user"
    extra = 0
    fields = ("provider", "subject", "issuer", "linked_by", "created_at")
    # The issuer comes from configuration (a link made for another issuer no longer signs in): shown, not typed.
    readonly_fields = ("issuer", "linked_by", "created_at")

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        formset = super().get_formset(request, obj, **kwargs)
        formset.form.base_fields["provider"].initial = SUPABASE
        return formset

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_row(self, request: HttpRequest, obj: ExternalIdentity, form: Any, change: bool) -> None:
        assert isinstance(request.user, User)
        identity_link(
            user=obj.user, provider=obj.provider, subject=obj.subject, by=request.user, client=client_info(request)
        )

    def delete_row(self, request: HttpRequest, obj: ExternalIdentity) -> None:
        assert isinstance(request.user, User)
        identity_unlink(identity=obj, by=request.user, client=client_info(request))


@admin.register(User)
class UserAdmin(ServiceAdminMixin, TrackedHistoryAdmin, DjangoUserAdmin):
    form = UserEditForm
    add_form = UserCreationForm
    change_password_form = PasswordChangeForm
    inlines = [ExternalIdentityInline, LoginSessionInline]
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

    def get_inlines(self, request: HttpRequest, obj: User | None) -> list[type[admin.options.InlineModelAdmin]]:
        return list(self.inlines) if obj is not None else []

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> HttpResponse:
        with _serving(request):
            return super().user_change_password(request, id, form_url)


class RevokedFilter(admin.SimpleListFilter):
    title = "revoked"
    parameter_name = "revoked"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Yes"), ("no", "No")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[LoginSession]) -> QuerySet[LoginSession]:
        if self.value() in {"yes", "no"}:
            return queryset.filter(revoked_at__isnull=self.value() == "no")
        return queryset


@admin.register(LoginSession)
class LoginSessionAdmin(LargeTableAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["user", "ip", "user_agent", "created_at", "last_seen_at", "expires_at", "revoked_at", "end_reason"]
    list_filter = ["end_reason", RevokedFilter]
    search_fields = ["user__email", "ip"]
    list_select_related = ["user"]
    exclude = ["refresh_jti"]
    actions = ["revoke_sessions"]

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("accounts.revoke_loginsession")

    @admin.action(description="Revoke selected sessions", permissions=["revoke"])
    def revoke_sessions(self, request: HttpRequest, queryset: QuerySet[LoginSession]) -> None:
        client = client_info(request)
        actor = request.user
        assert isinstance(actor, User)
        sessions = list(queryset.order_by("pk"))
        revoked = sum(session_revoke(session=session, client=client, actor=actor) for session in sessions)
        text = f"Revoked {revoked} session(s)."
        if revoked < len(sessions):
            text += f" {len(sessions) - revoked} had already ended."
        self.message_user(request, text, messages.SUCCESS)


@admin.register(SecurityEvent)
class SecurityEventAdmin(LargeTableAdminMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["created_at", "kind", "user", "email", "ip", "detail"]
    list_filter = ["kind", "created_at"]
    date_hierarchy = "created_at"
    search_fields = ["user__email", "email", "ip"]
    list_select_related = ["user"]


# SimpleJWT's blacklist app registers admins that show (and let one edit) every outstanding refresh token in
# full: live credentials anyone with admin access could copy and use. Login sessions above are the view of
# who is logged in, without the secrets. Its admin module is imported here first because this app is listed
# before it (autodiscovery would register it after this file ran); importing it again later does nothing.
import rest_framework_simplejwt.token_blacklist.admin  # noqa: E402, F401
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken  # noqa: E402

admin.site.unregister([OutstandingToken, BlacklistedToken])
