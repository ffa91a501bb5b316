from collections.abc import Iterable
from typing import Any

from django.contrib.auth import password_validation
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction

from portfolio_site.cache import invalidate_namespace

from .models import User

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


@transaction.atomic
def user_register(*, actor: Any, email: str, password: str, full_name: str = "") -> User:
    """Open registration creates the very first user, an administrator; after that only admins add users."""
    first = not User.objects.exists()
    if not first and not getattr(actor, "is_superuser", False):
        raise PermissionDenied("Only an administrator may create users.")
    return user_create(email=email, password=password, full_name=full_name, is_superuser=first, is_verified=first)


@transaction.atomic
def user_update(
    *, user: User, password: str | None = None, groups: Iterable[Group] | None = None, **fields: Any
) -> User:
    for name, value in fields.items():
        setattr(user, name, value)
    if user.is_superuser:
        user.is_staff = True
    if password is not None:
        _set_password(user, password)
    user.full_clean()
    user.save()
    if groups is not None:
        user.groups.set(groups)
    invalidate_namespace(CACHE_NAMESPACE)
    return user
