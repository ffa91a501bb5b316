"""Account flows by email: verifying the address, resetting a forgotten password, changing a known one.

Links carry signed tokens and expire. A verification link binds the user and the address it was sent to, so
changing the address voids it. A reset token is Django's `default_token_generator`'s: it hashes the password,
so it works once, and it expires after `PASSWORD_RESET_TIMEOUT`. Emails are sent by a worker once the
transaction commits (accounts.tasks): the caller's answer does not depend on the mail server (nor, for a
reset, on whether the address has an account).
"""

from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.tokens import default_token_generator
from django.core import signing
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_decode, urlsafe_base64_encode

from accounts import emails
from accounts.models import User
from portfolio_site import logs
from portfolio_site.errors import ConflictError

from .events import ClientInfo, Kind, security_event_record
from .users import user_set_password

VERIFY_EMAIL_SALT = "accounts.verify-email"
INVALID_VERIFICATION = "The verification link is invalid or has expired."
INVALID_RESET = "The password reset link is invalid, has expired or was already used."
WRONG_OLD_PASSWORD = "Your old password was entered incorrectly."


def _link(path: str, **params: str) -> str:
    return f"{settings.PUBLIC_BASE_URL.rstrip('/')}/{path}?{urlencode(params)}"


def _new_password_errors(error: ValidationError) -> ValidationError:
    """The password validators' messages under the name the caller gave the new password."""
    messages = error.message_dict.get("password", error.messages) if hasattr(error, "error_dict") else error.messages
    return ValidationError({"new_password": messages})


def _set_new_password(*, user: User, new_password: str, client: ClientInfo, kind: str) -> None:
    try:
        user_set_password(user=user, password=new_password, client=client, kind=kind)
    except ValidationError as error:
        raise _new_password_errors(error) from None


# --- Email verification ------------------------------------------------------------------------


def email_verification_token(*, user: User) -> str:
    return signing.dumps({"uid": user.pk, "email": user.email}, salt=VERIFY_EMAIL_SALT)


@transaction.atomic
def email_verification_send(*, user: User) -> None:
    """Emails the user a link that confirms their current address; ConflictError if it is confirmed already."""
    if user.is_verified:
        raise ConflictError("Your email address is already verified.")
    link = _link("verify-email", token=email_verification_token(user=user))
    context = {"link": link, "max_age_hours": settings.EMAIL_VERIFICATION_MAX_AGE_HOURS}
    emails.send_after_commit(template="verify_email", user=user, context=context)


@transaction.atomic
def email_verify(*, token: str, client: ClientInfo) -> User:
    """Marks the address the token was issued for as verified; a forged, expired or stale token is refused."""
    refused = ValidationError({"token": [INVALID_VERIFICATION]})
    try:
        data = signing.loads(token, salt=VERIFY_EMAIL_SALT, max_age=settings.EMAIL_VERIFICATION_MAX_AGE_HOURS * 3600)
    except signing.BadSignature:
        raise refused from None
    if not isinstance(data, dict) or not {"uid", "email"} <= data.keys():
        raise refused
    user = User.objects.select_for_update().filter(pk=data["uid"], is_active=True).first()
    if user is None or user.email != data["email"]:
        raise refused
    if not user.is_verified:
        user.is_verified = True
        user.save(update_fields=["is_verified", "updated_at"])
        security_event_record(kind=Kind.EMAIL_VERIFIED, client=client, user=user)
    return user


# --- Password reset ----------------------------------------------------------------------------


@transaction.atomic
def password_reset_request(*, email: str, client: ClientInfo) -> None:
    """Emails an active user with this address a reset link; does nothing, visibly alike, for anyone else."""
    user = User.objects.filter(email__iexact=User.objects.normalize_email(email), is_active=True).first()
    if user is None:
        return
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    link = _link("reset-password", uid=uid, token=logs.secret(default_token_generator.make_token(user)))
    context = {"link": link, "timeout_minutes": settings.PASSWORD_RESET_TIMEOUT // 60}
    emails.send_after_commit(template="password_reset", user=user, context=context)
    security_event_record(kind=Kind.PASSWORD_RESET_REQUESTED, client=client, user=user)


def _user_from_uid(uid: str) -> User | None:
    try:
        pk = urlsafe_base64_decode(uid).decode()
        return User.objects.select_for_update().filter(pk=pk, is_active=True).first()
    except (TypeError, ValueError, OverflowError, ValidationError):
        return None


@transaction.atomic
def password_reset_confirm(*, uid: str, token: str, new_password: str, client: ClientInfo) -> User:
    """Sets the new password if the link is genuine, unexpired and unused; every session of the user ends.

    The user row is locked first, so two uses of one link cannot both pass: the second sees the new password,
    which the token no longer matches.
    """
    user = _user_from_uid(uid)
    if user is None or not default_token_generator.check_token(user, token):
        raise ValidationError({"token": [INVALID_RESET]})
    _set_new_password(user=user, new_password=new_password, client=client, kind=Kind.PASSWORD_RESET)
    return user


# --- Password change ---------------------------------------------------------------------------


@transaction.atomic
def password_change(*, user: User, old_password: str, new_password: str, client: ClientInfo) -> None:
    """The user's own change, proven by the old password; every session ends, the current one too."""
    if not user.check_password(old_password):
        raise ValidationError({"old_password": [WRONG_OLD_PASSWORD]})
    _set_new_password(user=user, new_password=new_password, client=client, kind=Kind.PASSWORD_CHANGED)
