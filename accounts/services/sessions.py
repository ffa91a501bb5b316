"""Login sessions and the tokens issued for them.

Each login, through the API or the admin site, creates a `LoginSession`. An API session's id travels in
every token as the `sid` claim; an admin session's id in the Django session. Refresh tokens rotate on every
use: the session remembers the one refresh token that may still be used, so presenting an older one means
it was copied, and the whole session is revoked. Whether a session is still open is kept in the cache so
that checking a request costs no database query while the cache is up; when the cache cannot answer, the
database does.
"""

import datetime
import logging
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from rest_framework_simplejwt.exceptions import TokenBackendError, TokenBackendExpiredToken, TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.state import token_backend
from rest_framework_simplejwt.token_blacklist.models import OutstandingToken
from rest_framework_simplejwt.tokens import RefreshToken

from accounts.models import LoginSession, User

from .events import ClientInfo, Kind, security_event_record

logger = logging.getLogger(__name__)

EndReason = LoginSession.EndReason
SESSION_CLAIM = "sid"
ACTIVE = "active"
# How long the cache may vouch for an open session before asking the database again; bounds how long a
# revocation made while the cache was unreachable can go unnoticed.
ACTIVE_STATE_SECONDS = 60
SEEN_WRITE_SECONDS = 60

END_MESSAGES: dict[str, str] = {
    EndReason.LOGOUT: "The session was logged out.",
    EndReason.REVOKED: "The session was revoked.",
    EndReason.TOKEN_REUSE: "A refresh token was used twice; the session was revoked as a precaution.",
    EndReason.IDLE: "The session ended after a period of inactivity.",
    EndReason.EXPIRED: "The session reached its maximum lifetime.",
    EndReason.PASSWORD_CHANGED: "The password was changed; please log in again.",
    EndReason.USER_DEACTIVATED: "The account was deactivated.",
}


def end_message(reason: str) -> str:
    return END_MESSAGES.get(reason, "The session is not valid.")


class SessionEnded(Exception):
    """A token names a session that is over (or never was); the message says why, for the 401."""

    def __init__(self, reason: str) -> None:
        super().__init__(end_message(reason))
        self.reason = reason


@dataclass(frozen=True)
class TokenPair:
    access: str
    refresh: str
    session_id: str
    access_expires_at: datetime.datetime
    refresh_expires_at: datetime.datetime


def idle_timeout() -> datetime.timedelta:
    return datetime.timedelta(minutes=settings.SESSION_IDLE_MINUTES)


def _state_key(session_id: str) -> str:
    return f"login-session:{session_id}"


def _issue(session: LoginSession, now: datetime.datetime) -> TokenPair:
    """New access and refresh tokens for the session, neither outliving it; remembers the refresh token."""
    refresh = RefreshToken()
    refresh[jwt_settings.USER_ID_CLAIM] = str(session.user.pk)
    refresh[SESSION_CLAIM] = str(session.id)
    refresh_lifetime = min(settings.SIMPLE_JWT["REFRESH_TOKEN_LIFETIME"], session.expires_at - now)
    refresh.set_exp(from_time=now, lifetime=refresh_lifetime)
    access = refresh.access_token
    access.set_exp(from_time=now, lifetime=min(settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"], session.expires_at - now))
    session.refresh_jti = str(refresh["jti"])
    # Registered once complete (RefreshToken.for_user would register it before the session claim is set).
    OutstandingToken.objects.create(
        user=session.user,
        jti=session.refresh_jti,
        token=str(refresh),
        created_at=now,
        expires_at=datetime.datetime.fromtimestamp(refresh["exp"], tz=datetime.UTC),
    )
    return TokenPair(
        access=str(access),
        refresh=str(refresh),
        session_id=str(session.id),
        access_expires_at=datetime.datetime.fromtimestamp(access["exp"], tz=datetime.UTC),
        refresh_expires_at=datetime.datetime.fromtimestamp(refresh["exp"], tz=datetime.UTC),
    )


@transaction.atomic
def session_start(
    *, user: User, client: ClientInfo, channel: str = LoginSession.Channel.API
) -> tuple[LoginSession, TokenPair | None]:
    """Opens a session for a user who has fully authenticated; an API session gets its first tokens."""
    now = timezone.now()
    session = LoginSession(
        user=user,
        channel=channel,
        user_agent=client.user_agent[:512],
        ip=client.ip,
        created_at=now,
        last_seen_at=now,
        expires_at=now + datetime.timedelta(hours=settings.SESSION_ABSOLUTE_HOURS),
    )
    pair = _issue(session, now) if channel == LoginSession.Channel.API else None
    session.full_clean()
    session.save()
    return session, pair


def _end(session: LoginSession, reason: str, now: datetime.datetime) -> None:
    session.revoked_at = now
    session.end_reason = reason
    session.save(update_fields=["revoked_at", "end_reason"])
    # Forget "active" now, so that no one is waved through on the cache's word, and record the verdict once
    # committed, for longer than any access token issued for the session can live.
    key = _state_key(str(session.id))
    cache.delete(key)
    timeout = int(settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"].total_seconds()) + ACTIVE_STATE_SECONDS
    verdict = (reason, session.user_id)
    transaction.on_commit(lambda: cache.set(key, verdict, timeout=timeout))


def _timed_out(session: LoginSession, now: datetime.datetime) -> str | None:
    if now >= session.expires_at:
        return EndReason.EXPIRED
    if now - session.last_seen_at >= idle_timeout():
        return EndReason.IDLE
    return None


def session_refresh(*, raw_refresh: str, client: ClientInfo) -> TokenPair:
    """Exchanges a refresh token for new tokens, rotating it; raises SessionEnded with the reason otherwise.

    Ending a session (reuse, inactivity, lifetime) is committed before the refusal is raised, so it sticks.
    """
    try:
        payload = token_backend.decode(raw_refresh, verify=True)  # type: ignore[arg-type]
    except TokenBackendExpiredToken:
        # Refresh tokens are issued to expire with their session, so an expired one means the session did.
        raise SessionEnded(EndReason.EXPIRED) from None
    except TokenBackendError:
        raise SessionEnded("invalid") from None
    if payload.get("token_type") != "refresh" or SESSION_CLAIM not in payload:
        raise SessionEnded("invalid")
    now = timezone.now()
    ended: tuple[str, LoginSession] | None = None
    with transaction.atomic():
        session = (
            LoginSession.objects.select_for_update().select_related("user").filter(pk=payload[SESSION_CLAIM]).first()
        )
        if session is None or not session.user.is_active:
            raise SessionEnded("invalid")
        if session.revoked_at is not None:
            raise SessionEnded(session.end_reason)
        if payload.get("jti") != session.refresh_jti:
            _end(session, EndReason.TOKEN_REUSE, now)
            security_event_record(kind=Kind.TOKEN_REUSE, client=client, user=session.user, session=session)
            ended = (EndReason.TOKEN_REUSE, session)
        elif (reason := _timed_out(session, now)) is not None:
            _end(session, reason, now)
            ended = (reason, session)
        else:
            _blacklist(raw_refresh)
            pair = _issue(session, now)
            session.last_seen_at = now
            session.save(update_fields=["refresh_jti", "last_seen_at"])
            return pair
    raise SessionEnded(ended[0])


def _blacklist(raw_refresh: str) -> None:
    try:
        RefreshToken(raw_refresh).blacklist()  # type: ignore[arg-type]
    except TokenError:
        # Already blacklisted: the session's own check (one live refresh token) is what decides.
        logger.info("Refresh token was already blacklisted")


def _parse_session_id(session_id: Any) -> str | None:
    try:
        return str(uuid.UUID(str(session_id)))
    except ValueError:
        return None


def _state_from_database(session_id: str) -> tuple[str, int | None]:
    """The session's state and user as the database has them; ends a session found past a limit."""
    session = LoginSession.objects.filter(pk=session_id).first()
    if session is None:
        return "invalid", None
    if session.revoked_at is None and (reason := _timed_out(session, timezone.now())) is not None:
        with transaction.atomic():
            locked = LoginSession.objects.select_for_update().get(pk=session.pk)
            if locked.revoked_at is None:
                _end(locked, reason, timezone.now())
            session = locked
    if session.revoked_at is not None:
        return session.end_reason, session.user_id
    return ACTIVE, session.user_id


def session_state(session_id: Any) -> tuple[str, int | None]:
    """`"active"` or the reason the session ended, and whose session it is.

    From the cache, else from the database (then cached for a minute). The database also ends a session
    that has passed its idle or absolute limit, so the limits hold for every request, not only at refresh.
    """
    parsed = _parse_session_id(session_id)
    if parsed is None:
        return "invalid", None
    cached = cache.get(_state_key(parsed))
    if isinstance(cached, tuple):
        return cached[0], cached[1]
    state, user_id = _state_from_database(parsed)
    if state == ACTIVE:
        cache.set(_state_key(parsed), (state, user_id), timeout=ACTIVE_STATE_SECONDS)
    return state, user_id


def session_check(*, session_id: Any, user_id: Any) -> str:
    """Vouches that the session is open and belongs to `user_id`, recording the activity; the session's id.

    SessionEnded with the reason otherwise: a token or a Django session naming another user's session is
    refused like a session that does not exist.
    """
    state, owner = session_state(session_id)
    if owner is None or str(owner) != str(user_id):
        raise SessionEnded("invalid")
    if state != ACTIVE:
        raise SessionEnded(state)
    checked = str(_parse_session_id(session_id))
    session_touch(checked)
    return checked


def session_touch(session_id: str) -> None:
    """Records activity at most once a minute per session (a write per request would be wasteful).

    When the cache cannot say whether the session was seen lately (django-redis answers None while Redis is
    down), the activity is written anyway: an idle limit counted from a stale time would log people out.
    """
    if cache.add(f"login-session-seen:{session_id}", 1, timeout=SEEN_WRITE_SECONDS) is not False:
        LoginSession.objects.filter(pk=session_id, revoked_at__isnull=True).update(last_seen_at=timezone.now())


@transaction.atomic
def session_revoke(
    *, session: LoginSession, client: ClientInfo, reason: str = EndReason.REVOKED, actor: User | None = None
) -> bool:
    """Ends one session now; its access tokens stop working at once. False if it had already ended."""
    locked = LoginSession.objects.select_for_update().get(pk=session.pk)
    if locked.revoked_at is not None:
        return False
    _end(locked, reason, timezone.now())
    kind = Kind.LOGOUT if reason == EndReason.LOGOUT else Kind.SESSION_REVOKED
    detail = "" if actor is None or actor.pk == locked.user_id else f"by {actor.email}"
    security_event_record(kind=kind, client=client, user=locked.user, session=locked, detail=detail)
    return True


@transaction.atomic
def sessions_revoke_all(*, user: User, client: ClientInfo, reason: str = EndReason.REVOKED) -> int:
    """Ends every open session of the user (logout everywhere, password change, deactivation)."""
    now = timezone.now()
    sessions = list(LoginSession.objects.select_for_update().filter(user=user, revoked_at__isnull=True).order_by("pk"))
    for session in sessions:
        _end(session, reason, now)
    if sessions:
        kind = Kind.LOGOUT if reason == EndReason.LOGOUT else Kind.SESSION_REVOKED
        security_event_record(kind=kind, client=client, user=user, detail=f"{len(sessions)} session(s): {reason}")
    return len(sessions)
