"""How the API knows its caller: a bearer (or, in cookie mode, cookie) JWT, or the admin site's Django session.

Both honour the caller's `LoginSession`: once it has ended (logout, revocation, idle or absolute limit,
password change, deactivation) neither the token nor the admin's session opens the API.
"""

from typing import Any

from django.conf import settings
from rest_framework import exceptions
from rest_framework.authentication import CSRFCheck, SessionAuthentication
from rest_framework.request import Request
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import Token

from accounts.services.sessions import SESSION_CLAIM, SessionEnded, session_check
from accounts.web import LOGIN_SESSION_KEY

ACCESS_COOKIE = "access_token"
REFRESH_COOKIE = "refresh_token"


def enforce_csrf(request: Request) -> None:
    """The CSRF check Django applies to form posts, for requests authenticated by a cookie."""

    def no_response(request: Any) -> None:  # CsrfViewMiddleware wants a get_response
        return None

    check = CSRFCheck(no_response)  # type: ignore[arg-type]
    check.process_request(request)
    reason = check.process_view(request, None, (), {})  # type: ignore[arg-type]
    if reason:
        raise exceptions.PermissionDenied(f"CSRF failed: {reason}")


class SessionJWTAuthentication(JWTAuthentication):
    def authenticate(self, request: Request) -> tuple[Any, Token] | None:  # type: ignore[override]
        header = self.get_header(request)
        from_cookie = False
        if header is not None:
            raw_token = self.get_raw_token(header)
        elif settings.AUTH_COOKIE_MODE and request.COOKIES.get(ACCESS_COOKIE):
            raw_token, from_cookie = request.COOKIES[ACCESS_COOKIE].encode(), True
        else:
            return None
        if raw_token is None:
            return None
        token = self.get_validated_token(raw_token)
        session_id = token.get(SESSION_CLAIM)
        if not session_id:
            raise exceptions.AuthenticationFailed("The token belongs to no session.", code="no_session")
        user_id = token.get(jwt_settings.USER_ID_CLAIM)
        try:
            session_check(session_id=session_id, user_id=user_id)
        except SessionEnded as ended:
            raise exceptions.AuthenticationFailed(str(ended), code="session_ended") from None
        user = self.get_user(token)
        if from_cookie:
            enforce_csrf(request)
        return user, token


class LoginSessionAuthentication(SessionAuthentication):
    """The admin site's Django session, for the browsable API and Swagger UI: accepted only while the
    `LoginSession` it was opened with is live, and (as DRF's session authentication does) with the CSRF
    token on unsafe methods."""

    def authenticate(self, request: Request) -> tuple[Any, None] | None:
        user = getattr(request._request, "user", None)
        if not user or not user.is_active:
            return None
        try:
            session_check(session_id=request._request.session.get(LOGIN_SESSION_KEY), user_id=user.pk)
        except SessionEnded as ended:
            raise exceptions.AuthenticationFailed(str(ended), code="session_ended") from None
        self.enforce_csrf(request)
        return user, None
