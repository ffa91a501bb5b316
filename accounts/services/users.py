from collections.abc import Iterable
from typing import Any

from django.contrib.auth import password_validation
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction

from accounts.models import LoginSession, User
from portfolio_site.cache import invalidate_namespace

from .events import ClientInfo, Kind, security_event_record
from .sessions import sessions_revoke_all

EndReason = LoginSession.EndReason
NO_CLIENT = ClientInfo()

FIRST_USER_LOCK = 0x706F7274  # any constant: the advisory lock that serialises first registrations
# Cached responses that show users (a client's advisor name) depend on this namespace.
CACHE_NAMESPACE = "users"


def _set_password(user: User, password: str) -> None:
    try:
        password_validation.validate_password(password, user)
    except ValidationError as error:
        raise ValidationError({"password": error.messages}) from None
    user.set_password(password)


@transaction.atomic
def user_create(
    *,
    email: str,
    password: str | None,
    full_name: str = "",
    is_staff: bool = False,
    is_superuser: bool = False,
    is_verified: bool = False,
    is_active: bool = True,
    groups: Iterable[Group] = (),
) -> User:
    user = User(
        email=User.objects.normalize_email(email),
        full_name=full_name,
        is_staff=is_staff or is_superuser,
        is_superuser=is_superuser,
        is_verified=is_verified,
        is_active=is_active,
    )
    if password is None:
        user.set_unusable_password()
    else:
        _set_password(user, password)
    user.full_clean()
    user.save()
    user.groups.set(groups)
    invalidate_namespace(CACHE_NAMESPACE)
    return user


def registration_open_to(actor: Any) -> bool:
    """Whether `actor` may register a user: anyone while no user exists, then administrators only."""
    return bool(getattr(actor, "is_superuser", False)) or not User.objects.exists()


@transaction.atomic
def user_register(*, actor: Any, email: str, password: str, full_name: str = "") -> User:
    """Open registration creates the very first user, an administrator; after that only admins add users."""
    if connection.vendor == "postgresql":
        # Two simultaneous "first" registrations must not both become administrators: they queue here.
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [FIRST_USER_LOCK])
    first = not User.objects.exists()
    if not first and not getattr(actor, "is_superuser", False):
        raise PermissionDenied("Only an administrator may create users.")
    return user_create(email=email, password=password, full_name=full_name, is_superuser=first, is_verified=first)


@transaction.atomic
def user_update(
    *,
    user: User,
    password: str | None = None,
    groups: Iterable[Group] | None = None,
    client: ClientInfo = NO_CLIENT,
    **fields: Any,
) -> User:
    """Changes a user; a new password or a deactivation ends every session the user has open.

    A new email address is unverified, whatever the caller says: only its owner can prove it is theirs (an
    `is_verified=True` passed with it would let a typo, or a takeover, pass as confirmed).
    """
    # As stored, not as passed: the admin's form has already written its changes onto `user`.
    was_active, old_email = User.objects.filter(pk=user.pk).values_list("is_active", "email").first() or (False, "")
    for name, value in fields.items():
        setattr(user, name, value)
    if "email" in fields:
        user.email = User.objects.normalize_email(user.email)
        if user.email != User.objects.normalize_email(old_email):
            user.is_verified = False
    if user.is_superuser:
        user.is_staff = True
    if password is not None:
        _set_password(user, password)
    user.full_clean()
    user.save()
    if groups is not None:
        user.groups.set(groups)
    if password is not None:
        security_event_record(kind=Kind.PASSWORD_CHANGED, client=client, user=user, detail="set by an administrator")
        sessions_revoke_all(user=user, client=client, reason=EndReason.PASSWORD_CHANGED)
    if was_active and not user.is_active:
        sessions_revoke_all(user=user, client=client, reason=EndReason.USER_DEACTIVATED)
    invalidate_namespace(CACHE_NAMESPACE)
    return user


@transaction.atomic
def user_set_password(*, user: User, password: str, client: ClientInfo, kind: str = Kind.PASSWORD_CHANGED) -> None:
    """A user's new password (changed by them, or reset by email): validated, audited, every session ended."""
    _set_password(user, password)
    user.save(update_fields=["password"])
    security_event_record(kind=kind, client=client, user=user)
    sessions_revoke_all(user=user, client=client, reason=EndReason.PASSWORD_CHANGED)
