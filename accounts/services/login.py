"""Logging in: passwords, lockout after repeated failures, the two-factor step, and the new-IP alert.

Answers never tell whether an email address has an account: an unknown address, a wrong password and a
deactivated account fail alike, and lockout counts failures per address whether or not it exists.
"""

import datetime
import hashlib
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import authenticate
from django.core import signing
from django.db import transaction
from django.utils import timezone

from accounts import emails
from accounts.models import LoginSession, SecurityEvent, TOTPDevice, User

from .counters import counter_clear, counter_get, counter_hit
from .events import ClientInfo, Kind, security_event_record
from .sessions import TokenPair, session_start

Channel = LoginSession.Channel
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
    """Either a new session (with its first tokens for an API login), or (with two-factor on) a short-lived
    challenge to answer with a code."""

    session: LoginSession | None = None
    tokens: TokenPair | None = None
    challenge: str | None = None


# --- Lockout -----------------------------------------------------------------------------------
# Failures and locks are database counters (see .counters), so a cache outage cannot forget them.


def _address_key(email: str) -> str:
    return hashlib.sha256(User.objects.normalize_email(email).encode()).hexdigest()


def lockout_check(*, email: str) -> None:
    lock = counter_get(key=f"login-lock:{_address_key(email)}")
    if lock is not None:
        raise LockedOut(retry_after=lock.seconds_left())


def lockout_record_failure(*, email: str, client: ClientInfo, user: User | None = None) -> None:
    """Counts a failed attempt for the address; at the threshold the address is locked for a while."""
    key = _address_key(email)
    window = datetime.timedelta(minutes=settings.LOCKOUT_MINUTES)
    failures = counter_hit(key=f"login-failures:{key}", window=window)
    if failures.count >= settings.LOCKOUT_THRESHOLD:
        counter_hit(key=f"login-lock:{key}", window=window)
        counter_clear(key=f"login-failures:{key}")
        security_event_record(kind=Kind.LOCKOUT, client=client, user=user, email=email)


def lockout_clear(*, email: str) -> None:
    counter_clear(key=f"login-failures:{_address_key(email)}")


# --- Completing a login ------------------------------------------------------------------------


def two_factor_enabled(user: User) -> bool:
    return TOTPDevice.objects.filter(user=user, confirmed_at__isnull=False).exists()


def two_factor_challenge(*, user: User, method: str = "") -> str:
    """A signed challenge for the user's second step; it carries the first factor's method ("password",
    "oidc:corp"), so that the session and its security event name both factors."""
    return signing.dumps({"uid": user.pk, "nonce": uuid.uuid4().hex, "method": method}, salt=CHALLENGE_SALT)


@dataclass(frozen=True)
class Challenge:
    user: User
    nonce: str
    first_factor: str  # the method of the login's first step; "" for a challenge issued without one


def _challenge_key(nonce: str) -> str:
    return f"2fa-challenge-spent:{nonce}"


def two_factor_challenge_user(*, challenge: str) -> Challenge:
    """The user a challenge was issued to, its nonce and first factor; LoginFailed if it is forged, expired or
    spent."""
    try:
        data = signing.loads(challenge, salt=CHALLENGE_SALT, max_age=settings.TWO_FACTOR_CHALLENGE_SECONDS)
    except signing.BadSignature:
        raise LoginFailed("The login challenge is invalid or has expired; log in again.") from None
    user = User.objects.filter(pk=data["uid"], is_active=True).first()
    if user is None or counter_get(key=_challenge_key(data["nonce"])) is not None:
        raise LoginFailed("The login challenge is invalid or has expired; log in again.")
    method = data.get("method")
    return Challenge(user=user, nonce=data["nonce"], first_factor=method if isinstance(method, str) else "")


def two_factor_challenge_spend(*, nonce: str) -> None:
    counter_hit(key=_challenge_key(nonce), window=datetime.timedelta(seconds=settings.TWO_FACTOR_CHALLENGE_SECONDS))


def _may_use(user: User, channel: str) -> bool:
    """The admin site is for staff only; the API is for every active user."""
    return channel != Channel.ADMIN or user.is_staff


@transaction.atomic
def login_complete(*, user: User, client: ClientInfo, method: str, channel: str = Channel.API) -> LoginResult:
    """The user is authenticated (every factor passed): open a session, audit it, alert on a new IP.

    An API login gets the session's first tokens; an admin login gets the session, for the Django session
    to carry. LoginFailed if the user may not use that door (the admin site is for staff).
    """
    if not _may_use(user, channel):
        raise LoginFailed()
    first_login = user.last_login is None
    new_ip = (
        client.ip is not None
        and not first_login
        and not SecurityEvent.objects.filter(user=user, kind=Kind.LOGIN_SUCCEEDED, ip=client.ip).exists()
    )
    user.last_login = timezone.now()
    user.last_login_ip = client.ip
    user.save(update_fields=["last_login", "last_login_ip"])
    session, tokens = session_start(user=user, client=client, channel=channel)
    security_event_record(
        kind=Kind.LOGIN_SUCCEEDED, client=client, user=user, session=session, detail=f"method: {method}"
    )
    lockout_clear(email=user.email)
    if new_ip:
        security_event_record(kind=Kind.NEW_IP_LOGIN, client=client, user=user)
        context = {"ip": client.ip or "", "user_agent": client.user_agent}
        emails.send_after_commit(template="new_ip_login", user=user, context=context)
    return LoginResult(session=session, tokens=tokens)


def first_factor_passed(
    *, user: User, client: ClientInfo, method: str, channel: str = Channel.API, second_factor_by: str = ""
) -> LoginResult:
    """After a password, an emailed code or an identity provider: a session, or a challenge when the user has
    two-factor on.

    `second_factor_by` says how a second factor was already proven elsewhere (an identity provider whose `amr`
    claim configuration trusts, e.g. "amr trusted: mfa"): the challenge is then skipped, and the reason kept
    in the audit trail.
    """
    if second_factor_by:
        return login_complete(user=user, client=client, method=f"{method} ({second_factor_by})", channel=channel)
    if two_factor_enabled(user):
        return LoginResult(challenge=two_factor_challenge(user=user, method=method))
    return login_complete(user=user, client=client, method=method, channel=channel)


def local_password_allowed(user: User) -> bool:
    """Whether the user may sign in with a local secret (a password, or an emailed code standing in for one):
    LOCAL_PASSWORDS turns it off for staff, who then sign in through the identity provider; "superusers" keeps
    it for superusers only, a break-glass account for when the provider is down."""
    policy = settings.LOCAL_PASSWORDS
    if not user.is_staff or policy == "on":
        return True
    return policy == "superusers" and user.is_superuser


def local_password_refuse(*, user: User, client: ClientInfo, method: str) -> None:
    """LoginFailed when LOCAL_PASSWORDS refuses the user a local secret: the same answer as a wrong password.

    Called only after the secret was found right, so a distinct answer would confirm the password to whoever
    tries stolen ones; the precise reason goes to the audit trail, and the admin login page tells staff to sign
    in through the provider. Not counted toward the lockout: a right password is no guessing attack.
    """
    if local_password_allowed(user):
        return
    security_event_record(
        kind=Kind.LOGIN_FAILED, client=client, user=user, detail=f"{method}: local passwords off for staff"
    )
    raise LoginFailed(INVALID_CREDENTIALS)


def password_login(*, email: str, password: str, client: ClientInfo, channel: str = Channel.API) -> LoginResult:
    """Logs in with a password through the API or the admin site; LoginFailed or LockedOut otherwise.

    Whatever the door, a failure is audited and counts toward the address's lockout, and a user who may not
    use the door (a non-staff user at the admin site) is refused with the same answer as a wrong password.
    """
    lockout_check(email=email)
    user = authenticate(username=email, password=password)
    if user is not None and not _may_use(user, channel):  # type: ignore[arg-type]
        security_event_record(
            kind=Kind.LOGIN_FAILED, client=client, user=user, email=email, detail=f"{channel}: not staff"
        )
        raise LoginFailed()
    if user is None:
        known = User.objects.filter(email__iexact=User.objects.normalize_email(email)).first()
        security_event_record(kind=Kind.LOGIN_FAILED, client=client, user=known, email=email, detail="password")
        lockout_record_failure(email=email, client=client, user=known)
        raise LoginFailed()
    assert isinstance(user, User)
    local_password_refuse(user=user, client=client, method="password")
    return first_factor_passed(user=user, client=client, method="password", channel=channel)
