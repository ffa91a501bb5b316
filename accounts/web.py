"""The admin site's side of login sessions: a Django session carries the id of the `LoginSession` it was
opened with, and lives exactly as long as that session does."""

from collections.abc import Callable

from django.conf import settings
from django.contrib import auth, messages
from django.http import HttpRequest, HttpResponse
from rest_framework.throttling import BaseThrottle

from accounts.models import LoginSession, User
from accounts.services.events import ClientInfo
from accounts.services.sessions import SessionEnded, session_check, session_revoke

LOGIN_SESSION_KEY = "_login_session_id"


def client_info(request: HttpRequest) -> ClientInfo:
    """Where a request came from. The API's throttle identity honours NUM_PROXIES, and so does this, so that
    audit records and rate limits agree on the IP whatever the door."""
    ip = BaseThrottle().get_ident(request) or None  # type: ignore[arg-type]  # reads only META, as both have
    return ClientInfo(ip=ip, user_agent=request.headers.get("User-Agent", ""))


def web_login(request: HttpRequest, *, session: LoginSession) -> None:
    """Logs the session's user in to the Django session (a new session key), bound to the login session."""
    # The one backend the site has (the login service has checked the password already).
    auth.login(request, session.user, backend=settings.AUTHENTICATION_BACKENDS[0])
    request.session[LOGIN_SESSION_KEY] = str(session.id)


def web_session_end(request: HttpRequest, *, reason: str = LoginSession.EndReason.LOGOUT) -> None:
    """Ends the login session behind the request's Django session (the caller then ends the Django session)."""
    session_id = request.session.get(LOGIN_SESSION_KEY)
    user_id = request.user.pk
    session = LoginSession.objects.filter(pk=session_id, user_id=user_id).first() if session_id and user_id else None
    if session is not None:
        session_revoke(session=session, client=client_info(request), reason=reason)


class LoginSessionMiddleware:
    """Ends a Django session as soon as its login session has ended (or if it has none, like a session opened
    before login sessions covered the admin). Goes after AuthenticationMiddleware and MessageMiddleware: it
    tells the user why the session ended."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # Only a request carrying a session cookie can be logged in; others cost nothing here.
        if request.session.session_key is not None and request.user.is_authenticated:
            user: User = request.user  # type: ignore[assignment]
            try:
                session_check(session_id=request.session.get(LOGIN_SESSION_KEY), user_id=user.pk)
            except SessionEnded as ended:
                auth.logout(request)
                messages.warning(request, str(ended))
        return self.get_response(request)
