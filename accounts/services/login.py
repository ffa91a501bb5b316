"""Logging in: passwords, lockout after repeated failures, the two-factor step, and the new-IP alert.

Answers never tell whether an email address has an account: an unknown address, a wrong password and a
deactivated account fail alike, and lockout counts failures per address whether or not it exists.
"""

import hashlib
import time
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import authenticate
from django.core import signing
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from accounts import emails
from accounts.models import SecurityEvent, TOTPDevice, User

from .events import ClientInfo, Kind, security_event_record
from .sessions import TokenPair, session_start

CHALLENGE_SALT = "accounts.two-factor-challenge"
INVALID_CREDENTIALS = "Unable to log in with the given credentials."


class LoginFailed(Exception):
    """Credentials refused; the message is the same whatever the reason."""

    def __init__(self, message: str = INVALID_CREDENTIALS) -> None:
        super().__init__(message)


class LockedOut(Exception):
    """Too many failures for this address; try again after `retry_after` seconds."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("Too many failed attempts. Try again later.")
        self.retry_after = retry_after


@dataclass(frozen=True)
class LoginResult:
    """Either tokens, or (with two-factor on) a short-lived challenge to answer with a code."""

    tokens: TokenPair | None = None
    challenge: str | None = None


# --- Lockout -----------------------------------------------------------------------------------


def _address_key(email: str) -> str:
    return hashlib.sha256(User.objects.normalize_email(email).encode()).hexdigest()


def lockout_check(*, email: str) -> None:
    locked_until = cache.get(f"login-lock:{_address_key(email)}")
    if locked_until is not None and locked_until > time.time():
        raise LockedOut(retry_after=max(1, int(locked_until - time.time()) + 1))


def lockout_record_failure(*, email: str, client: ClientInfo, user: User | None = None) -> None:
    """Counts a failed attempt for the address; at the threshold the address is locked for a while."""
    key = _address_key(email)
    window = settings.LOCKOUT_MINUTES * 60
    cache.add(f"login-failures:{key}", 0, timeout=window)
    try:
        failures = cache.incr(f"login-failures:{key}")
    except ValueError:  # expired between add() and incr()
        cache.set(f"login-failures:{key}", 1, timeout=window)
        failures = 1
    if failures is not None and failures >= settings.LOCKOUT_THRESHOLD:
        cache.set(f"login-lock:{key}", time.time() + window, timeout=window)
        cache.delete(f"login-failures:{key}")
        security_event_record(kind=Kind.LOCKOUT, client=client, user=user, email=email)


def lockout_clear(*, email: str) -> None:
    cache.delete(f"login-failures:{_address_key(email)}")


# --- Completing a login ------------------------------------------------------------------------


def two_factor_enabled(user: User) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed_at__isnull=False).exists()


def two_factor_challenge(*, user: User) -> str:
    return signing.dumps({"uid": user.pk, "nonce": uuid.uuid4().hex}, salt=CHALLENGE_SALT)


def two_factor_challenge_user(*, challenge: str) -> tuple[User, str]:
    """The user a challenge was issued to and its nonce; LoginFailed if it is forged, expired or spent."""
    try:
        data = signing.loads(challenge, salt=CHALLENGE_SALT, max_age=settings.TWO_FACTOR_CHALLENGE_SECONDS)
    except signing.BadSignature:
        raise LoginFailed("The login challenge is invalid or has expired; log in again.") from None
    user = User.objects.filter(pk=data["uid"], is_active=True).first()
    if user is None or cache.get(f"2fa-challenge-spent:{data['nonce']}"):
        raise LoginFailed("The login challenge is invalid or has expired; log in again.")
    return user, data["nonce"]


def two_factor_challenge_spend(*, nonce: str) -> None:
    cache.set(f"2fa-challenge-spent:{nonce}", 1, timeout=settings.TWO_FACTOR_CHALLENGE_SECONDS)


@transaction.atomic
def login_complete(*, user: User, client: ClientInfo, method: str) -> TokenPair:
    """The user is authenticated (every factor passed): open a session, audit it, alert on a new IP."""
    first_login = user.last_login is None
    new_ip = (
        client.ip is not None
        and not first_login
        and not SecurityEvent.objects.filter(user=user, kind=Kind.LOGIN_SUCCEEDED, ip=client.ip).exists()
    )
    user.last_login = timezone.now()
    user.last_login_ip = client.ip
    user.save(update_fields=["last_login", "last_login_ip"])
    tokens = session_start(user=user, client=client)
    security_event_record(kind=Kind.LOGIN_SUCCEEDED, client=client, user=user, detail=f"method: {method}")
    lockout_clear(email=user.email)
    if new_ip:
        security_event_record(kind=Kind.NEW_IP_LOGIN, client=client, user=user)
        context = {"ip": client.ip or "", "user_agent": client.user_agent}
        emails.send_after_commit(template="new_ip_login", user=user, context=context)
    return tokens


def first_factor_passed(*, user: User, client: ClientInfo, method: str) -> LoginResult:
    """After a password or an emailed code: tokens, or a challenge when the user has two-factor on."""
    if two_factor_enabled(user):
        return LoginResult(challenge=two_factor_challenge(user=user))
    return LoginResult(tokens=login_complete(user=user, client=client, method=method))


def password_login(*, email: str, password: str, client: ClientInfo) -> LoginResult:
    lockout_check(email=email)
    user = authenticate(username=email, password=password)
    if user is None:
        known = User.objects.filter(email__iexact=User.objects.normalize_email(email)).first()
        security_event_record(kind=Kind.LOGIN_FAILED, client=client, user=known, email=email, detail="password")
        lockout_record_failure(email=email, client=client, user=known)
        raise LoginFailed()
    assert isinstance(user, User)
    return first_factor_passed(user=user, client=client, method="password")
