"""Logging in with a one-time code sent by email, in place of the password.

A code is six random digits, valid for `LOGIN_CODE_MINUTES`, good for one login and for at most
`LOGIN_CODE_MAX_ATTEMPTS` guesses; asking for a new one kills the older ones. Only a keyed hash of it is
stored. Asking for a code answers alike whether or not the address has an account; a wrong code, an unknown
address and an inactive account fail alike and count toward the address's lockout, as a wrong password does.
"""

import datetime
import secrets

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from accounts import emails
from accounts.models import EmailLoginCode, User
from portfolio_site import logs

from .events import ClientInfo, Kind, security_event_record
from .login import (
    LoginFailed,
    LoginResult,
    first_factor_passed,
    local_password_allowed,
    local_password_refuse,
    lockout_check,
    lockout_record_failure,
)

CODE_SALT = "accounts.email-login-code"
CODE_DIGITS = 6


def login_code_hash(*, user_pk: int, code: str) -> str:
    """A keyed hash of the code, bound to its user: the database alone cannot reveal or forge a code."""
    return salted_hmac(CODE_SALT, f"{user_pk}:{code}", algorithm="sha256").hexdigest()


def _active_user(email: str) -> User | None:
    return User.objects.filter(email__iexact=User.objects.normalize_email(email), is_active=True).first()


@transaction.atomic
def login_code_request(*, email: str, client: ClientInfo) -> None:
    """Emails a fresh login code to the address if it belongs to an active user; does nothing otherwise.

    The caller answers the same either way. A worker sends the email once this commits (accounts.tasks), and
    retries a mail server that does not answer: the request neither waits for it nor fails with it.
    """
    user = _active_user(email)
    if user is None:
        return
    now = timezone.now()
    EmailLoginCode.objects.filter(user=user, used_at__isnull=True).delete()
    code = logs.secret(f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}")  # masked in any log line
    login_code = EmailLoginCode(
        user=user,
        code_hash=login_code_hash(user_pk=user.pk, code=code),
        created_at=now,
        expires_at=now + datetime.timedelta(minutes=settings.LOGIN_CODE_MINUTES),
    )
    login_code.full_clean()
    login_code.save()
    security_event_record(kind=Kind.OTP_REQUESTED, client=client, user=user)
    emails.send_after_commit(
        template="login_code", user=user, context={"code": code, "minutes": settings.LOGIN_CODE_MINUTES}
    )


def _spend(user: User | None, code: str) -> bool:
    """Spends the user's live code if `code` matches it, else counts a guess against it. True on a match."""
    if user is None:
        return False
    login_code = (
        EmailLoginCode.objects.select_for_update()
        .filter(
            user=user,
            used_at__isnull=True,
            expires_at__gt=timezone.now(),
            attempts__lt=settings.LOGIN_CODE_MAX_ATTEMPTS,
        )
        .order_by("-created_at", "-pk")
        .first()
    )
    if login_code is None:
        return False
    if constant_time_compare(login_code.code_hash, login_code_hash(user_pk=user.pk, code=code.strip())):
        login_code.used_at = timezone.now()
        login_code.save(update_fields=["used_at"])
        return True
    login_code.attempts += 1
    login_code.save(update_fields=["attempts"])
    return False


def login_code_login(*, email: str, code: str, client: ClientInfo) -> LoginResult:
    """Logs in with an emailed code: tokens, or a two-factor challenge; LoginFailed or LockedOut otherwise.

    A refused guess is committed (attempt counted, event recorded) before the refusal is raised.
    """
    lockout_check(email=email)
    with transaction.atomic():
        user = _active_user(email)
        spent = _spend(user, code)
        if spent:
            assert user is not None
            security_event_record(kind=Kind.OTP_USED, client=client, user=user)
            if local_password_allowed(user):
                return first_factor_passed(user=user, client=client, method="email_code")
    if spent:
        # An emailed code stands in for a password: LOCAL_PASSWORDS refuses it to staff alike. Raised once the
        # code is spent and committed, so the refusal is audited and the code cannot be tried again.
        assert user is not None
        local_password_refuse(user=user, client=client, method="email_code")
    known = user or User.objects.filter(email__iexact=User.objects.normalize_email(email)).first()
    security_event_record(kind=Kind.OTP_FAILED, client=client, user=known, email=email)
    lockout_record_failure(email=email, client=client, user=known)
    raise LoginFailed()
