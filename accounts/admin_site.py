"""The admin site's door: its login is the API's login service, step for step.

A password goes through `password_login` (lockout, audit, new-IP alert) after the same throttles as
`POST /api/v1/auth/login/`; a user with two-factor on then answers a second step with an authenticator or
recovery code (`two_factor_verify`); the login opens a `LoginSession` that the Django session is bound to.
Logging out ends that session, and changing one's password goes through `user_set_password`, which ends
every session of the user.
"""

from collections.abc import Callable
from typing import Any, ClassVar

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import PasswordChangeForm
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.template.response import TemplateResponse
from django.urls import URLPattern, URLResolver, path, reverse
from django.utils.decorators import method_decorator
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters

from accounts.models import LoginSession, User
from accounts.oidc_config import OIDCProvider, oidc_providers
from accounts.services import login as login_service
from accounts.services import oidc as oidc_service
from accounts.services import two_factor as two_factor_service
from accounts.services.events import ClientInfo
from accounts.services.login import LockedOut, LoginFailed, LoginResult
from accounts.services.users import user_set_password
from accounts.throttles import throttle_wait
from accounts.web import client_info, web_login, web_session_end
from portfolio_site import logs

ADMIN = LoginSession.Channel.ADMIN
CHALLENGE_KEY = "_admin_two_factor_challenge"
NEXT_KEY = "_admin_two_factor_next"
# The state of the sign-in this browser started at a provider, and where to go after it: the callback accepts only
# that state, so that nobody can finish their own sign-in in someone else's browser (login CSRF).
OIDC_STATE_KEY = "_admin_oidc_state"
OIDC_NEXT_KEY = "_admin_oidc_next"
TOO_MANY = "Too many attempts. Try again in {minutes} minute(s)."


class Refused(Exception):
    """A login step refused with a status (401 or 429) and, for 429, the seconds to wait."""

    def __init__(self, message: str, status: int, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


def _too_many(seconds: int) -> Refused:
    return Refused(TOO_MANY.format(minutes=max(1, -(-seconds // 60))), status=429, retry_after=seconds)


def _refusal(error: LoginFailed | LockedOut) -> Refused:
    if isinstance(error, LockedOut):
        return _too_many(error.retry_after)
    return Refused(str(error), status=401)


class AdminLoginForm(forms.Form):
    """Email and password, checked by the login service; `result` is its answer once the form is valid."""

    username = forms.EmailField(label="Email", max_length=254, widget=forms.EmailInput(attrs={"autofocus": True}))
    password = forms.CharField(label="Password", strip=False, widget=forms.PasswordInput)

    def __init__(self, request: HttpRequest, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request = request
        self.result: LoginResult | None = None
        self.refused: Refused | None = None

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        client = client_info(self.request)
        try:
            wait = throttle_wait(scope="login", ip=client.ip, email=data["username"])
            if wait is not None:
                raise _too_many(wait)
            try:
                self.result = login_service.password_login(
                    email=data["username"], password=data["password"], client=client, channel=ADMIN
                )
            except (LoginFailed, LockedOut) as error:
                raise _refusal(error) from None
        except Refused as refused:
            self.refused = refused
            raise forms.ValidationError(str(refused), code="refused") from None
        return data


class TwoFactorForm(forms.Form):
    code = forms.CharField(
        label="Authenticator or recovery code",
        max_length=64,
        widget=forms.TextInput(attrs={"autofocus": True, "autocomplete": "one-time-code"}),
    )


def _refused_response(response: HttpResponse, refused: Refused | None) -> HttpResponse:
    if refused is not None:
        response.status_code = refused.status
        if refused.retry_after is not None:
            response["Retry-After"] = str(refused.retry_after)
    return response


class SitePasswordChangeForm(PasswordChangeForm):
    """The admin's "change my password" form, saving through `user_set_password`: validated, audited, and every
    session of the user ended (this one too: the next page asks to log in again with the new password)."""

    def __init__(self, user: User, *args: Any, client: ClientInfo, **kwargs: Any) -> None:
        super().__init__(user, *args, **kwargs)
        self.client = client

    def save(self, commit: bool = True) -> User:
        user_set_password(user=self.user, password=self.cleaned_data["new_password1"], client=self.client)
        return self.user


class SitePasswordChangeView(auth_views.PasswordChangeView):
    form_class = SitePasswordChangeForm

    def get_form_kwargs(self) -> dict[str, Any]:
        return {**super().get_form_kwargs(), "client": client_info(self.request)}


# A section an upper app adds to the admin's index page (holdings: the dashboard): given the request (of a user the
# admin let in), its HTML, already escaped (rendered by a template), or "" to show nothing. This app is the lowest
# layer and imports none of them; they register here (`add_index_panel`), as apps add to a client's page.
IndexPanel = Callable[[HttpRequest], str]


class AdminSite(admin.AdminSite):
    site_header = "Portfolio back-office"
    site_title = "Portfolio back-office"
    index_title = "Administration"
    index_panels: ClassVar[list[IndexPanel]] = []

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        # Rendered by templates/admin/index.html above the list of apps.
        panels = [html for panel in self.index_panels if (html := panel(request))]
        return super().index(request, {"index_panels": panels, **(extra_context or {})})

    def get_urls(self) -> list[URLPattern | URLResolver]:
        return [
            path("login/two-factor/", self.two_factor_login, name="login_two_factor"),
            path("oidc/<str:name>/login/", self.oidc_login, name="oidc_login"),
            path("oidc/<str:name>/callback/", self.oidc_callback, name="oidc_callback"),
            *super().get_urls(),
        ]

    def _context(self, request: HttpRequest, **extra: Any) -> dict[str, Any]:
        return {**self.each_context(request), "app_path": request.get_full_path(), **extra}

    def _next_url(self, request: HttpRequest, candidate: str | None) -> str:
        if candidate and url_has_allowed_host_and_scheme(
            candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
        ):
            return candidate
        return reverse("admin:index", current_app=self.name)

    @method_decorator(sensitive_post_parameters("password"))
    @method_decorator(csrf_protect)
    @method_decorator(never_cache)
    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        next_url = self._next_url(request, request.POST.get("next") or request.GET.get("next"))
        if request.method == "GET" and self.has_permission(request):
            return HttpResponseRedirect(next_url)
        form = AdminLoginForm(request, data=request.POST if request.method == "POST" else None)
        if request.method == "POST" and form.is_valid():
            assert form.result is not None
            if form.result.challenge is not None:
                request.session[CHALLENGE_KEY] = form.result.challenge
                request.session[NEXT_KEY] = next_url
                return HttpResponseRedirect(reverse("admin:login_two_factor", current_app=self.name))
            assert form.result.session is not None
            web_login(request, session=form.result.session)
            return HttpResponseRedirect(next_url)
        context = self._context(
            request,
            form=form,
            title="Log in",
            subtitle=None,
            next=next_url,
            username=request.user.get_username(),
            oidc_providers=list(oidc_providers().values()),
            local_passwords=settings.LOCAL_PASSWORDS,
        )
        context.update(extra_context or {})
        request.current_app = self.name
        return _refused_response(render(request, "admin/login.html", context), form.refused)

    @staticmethod
    def _oidc_provider(name: str) -> OIDCProvider:
        try:
            return oidc_service.oidc_provider(name)
        except oidc_service.OIDCNotConfigured:
            raise Http404(oidc_service.NOT_CONFIGURED) from None

    def _back_to_login(self, request: HttpRequest, message: str) -> HttpResponse:
        messages.error(request, message)
        return HttpResponseRedirect(reverse("admin:login", current_app=self.name))

    @method_decorator(never_cache)
    def oidc_login(self, request: HttpRequest, name: str) -> HttpResponse:
        """Sends the browser to the provider, with a new sign-in's state, nonce and PKCE challenge."""
        provider = self._oidc_provider(name)
        client = client_info(request)
        wait = throttle_wait(scope="login", ip=client.ip, email=None)
        if wait is not None:
            return self._back_to_login(request, str(_too_many(wait)))
        callback = request.build_absolute_uri(reverse("admin:oidc_callback", args=[name], current_app=self.name))
        try:
            start = oidc_service.oidc_authorization_start(provider=provider, redirect_uri=callback, channel=ADMIN)
        except oidc_service.OIDCUnavailable:
            return self._back_to_login(request, f"{provider.label}: {oidc_service.UNAVAILABLE}")
        request.session[OIDC_STATE_KEY] = start.state
        request.session[OIDC_NEXT_KEY] = self._next_url(request, request.GET.get("next"))
        return HttpResponseRedirect(start.url)

    @method_decorator(never_cache)
    def oidc_callback(self, request: HttpRequest, name: str) -> HttpResponse:
        """Back from the provider: finishes the sign-in, into the two-factor step when the user needs it."""
        provider = self._oidc_provider(name)
        code = logs.secret(request.GET.get("code", ""))
        state = request.GET.get("state", "")
        expected_state = request.session.pop(OIDC_STATE_KEY, None)
        next_url = request.session.pop(OIDC_NEXT_KEY, None)
        if "error" in request.GET:
            # The provider's error text is not shown: it is the provider's to word, and anyone can put it in a link.
            return self._back_to_login(request, f"The sign-in with {provider.label} was cancelled or refused.")
        if not code or not state or state != expected_state:
            return self._back_to_login(request, oidc_service.REFUSED)
        logs.secret(state)  # it finishes this sign-in: no log line of the request may show it
        client = client_info(request)
        wait = throttle_wait(scope="login", ip=client.ip, email=None)
        if wait is not None:
            return self._back_to_login(request, str(_too_many(wait)))
        try:
            result = oidc_service.oidc_login(provider=provider, code=code, state=state, client=client, channel=ADMIN)
        except (LoginFailed, LockedOut) as error:
            return self._back_to_login(request, str(_refusal(error)))
        except oidc_service.OIDCUnavailable:
            return self._back_to_login(request, f"{provider.label}: {oidc_service.UNAVAILABLE}")
        if result.challenge is not None:
            request.session[CHALLENGE_KEY] = result.challenge
            request.session[NEXT_KEY] = next_url
            return HttpResponseRedirect(reverse("admin:login_two_factor", current_app=self.name))
        assert result.session is not None
        web_login(request, session=result.session)
        return HttpResponseRedirect(self._next_url(request, next_url))

    @method_decorator(sensitive_post_parameters("code"))
    @method_decorator(csrf_protect)
    @method_decorator(never_cache)
    def two_factor_login(self, request: HttpRequest) -> HttpResponse:
        challenge = request.session.get(CHALLENGE_KEY)
        if not challenge:
            return HttpResponseRedirect(reverse("admin:login", current_app=self.name))
        form = TwoFactorForm(data=request.POST if request.method == "POST" else None)
        refused: Refused | None = None
        if request.method == "POST" and form.is_valid():
            client = client_info(request)
            code = form.cleaned_data["code"]
            try:
                wait = throttle_wait(scope="login", ip=client.ip, email=None)
                if wait is not None:
                    raise _too_many(wait)
                try:
                    result = two_factor_service.two_factor_verify(
                        challenge=challenge, client=client, code=code, recovery_code=code, channel=ADMIN
                    )
                except (LoginFailed, LockedOut) as error:
                    raise _refusal(error) from None
            except Refused as error:
                refused = error
                form.add_error(None, str(error))
            else:
                next_url = request.session.get(NEXT_KEY)
                assert result.session is not None
                web_login(request, session=result.session)  # a new Django session: the challenge goes with it
                return HttpResponseRedirect(self._next_url(request, next_url))
            if refused.status == 401 and not self._challenge_live(challenge):
                request.session.pop(CHALLENGE_KEY, None)
                messages.error(request, str(refused))
                return HttpResponseRedirect(reverse("admin:login", current_app=self.name))
        context = self._context(request, form=form, title="Two-factor authentication", subtitle=None)
        request.current_app = self.name
        return _refused_response(render(request, "admin/two_factor_login.html", context), refused)

    @staticmethod
    def _challenge_live(challenge: str) -> bool:
        try:
            login_service.two_factor_challenge_user(challenge=challenge)
        except LoginFailed:
            return False
        return True

    def logout(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        if request.method == "POST":
            web_session_end(request)
        return super().logout(request, extra_context)

    def password_change(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> TemplateResponse:
        request.current_app = self.name
        return SitePasswordChangeView.as_view(  # type: ignore[return-value]
            success_url=reverse("admin:password_change_done", current_app=self.name),
            extra_context={**self.each_context(request), **(extra_context or {})},
            template_name=self.password_change_template or "registration/password_change_form.html",
        )(request)


def add_index_panel(panel: IndexPanel) -> None:
    AdminSite.index_panels = [*AdminSite.index_panels, panel]
