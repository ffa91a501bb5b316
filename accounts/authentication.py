"""Bearer (or, in cookie mode, cookie) JWT authentication that honours session revocation at once."""

from typing import Any

from django.conf import settings
from rest_framework import exceptions
from rest_framework.authentication import CSRFCheck
from rest_framework.request import Request
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.tokens import Token

from accounts.services.sessions import ACTIVE, SESSION_CLAIM, end_message, session_state, session_touch

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
        state = session_state(str(session_id))
        if state != ACTIVE:
            raise exceptions.AuthenticationFailed(end_message(state), code="session_ended")
        user = self.get_user(token)
        if from_cookie:
            enforce_csrf(request)
        session_touch(str(session_id))
        return user, token
