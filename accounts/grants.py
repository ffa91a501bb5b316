"""What a user's groups grant them (their roles and model permissions), kept in the cache across requests.

Every request asked the database three times who its user is allowed to be: the group names (the roles, which
scope their clients) and Django's two permission queries (their own and their groups'). On a 100-row page of the
ledger that was a quarter of the request. `grants(user)` keeps both in the cache, under two versions: the user's own,
which joining or leaving a group or being given or refused a permission bumps, and everyone's, which every other
change to who holds what bumps, at once and when its transaction commits (`accounts.signals`):
a user added to or removed from a group, a group's permissions changed, a group renamed or deleted, a permission
deleted, and every `migrate` (data migrations grant roles through historical models, which send no signal Django
lets us connect to). Whether the user is active or a superuser is read from their row on every request, as before.

The cache is shared by every process in production (Redis is required there), so a change holds everywhere at
once; entries also expire after `GRANTS_CACHE_SECONDS`, which bounds what a change made outside the ORM (raw SQL)
could leave behind.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.backends import ModelBackend

from portfolio_site.cache import invalidate_namespace, versioned_get, versioned_set

NAMESPACE = "authz"


@dataclass(frozen=True)
class Grants:
    roles: frozenset[str]  # the names of the user's groups
    permissions: frozenset[str]  # "app_label.codename", their own and their groups'


def _looked_up(user: Any) -> Grants:
    backend = ModelBackend()
    return Grants(
        roles=frozenset(user.groups.values_list("name", flat=True)),
        permissions=frozenset(backend.get_user_permissions(user) | backend.get_group_permissions(user)),
    )


def _user_namespace(user_id: Any) -> str:
    return f"{NAMESPACE}:user:{user_id}"


def grants(user: Any) -> Grants:
    """The user's roles and permissions: from the user object once per request, from the cache across requests,
    from the database when the cache has none for the current versions (everyone's and the user's own). An actor
    that is no saved user (the command line's) is looked up each time."""
    cached = getattr(user, "_grants_cache", None)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    if getattr(user, "pk", None) is None:
        return _looked_up(user)
    # The versions first, then the rows: a change committed after this read bumps a version, so what is stored
    # below from older rows is stored under versions no one reads any more.
    key = f"{NAMESPACE}:{user.pk}"
    found, versions = versioned_get(key, [NAMESPACE, _user_namespace(user.pk)])
    if not isinstance(found, Grants):
        found = _looked_up(user)
        versioned_set(key, found, versions, timeout=settings.GRANTS_CACHE_SECONDS)
    user._grants_cache = found
    return found


def grants_changed(user_ids: Iterable[Any] | None = None) -> None:
    """The grants of these users (of everyone, by default) are to be looked up again: at once, for the rest of the
    transaction that changed them, and once it commits, for everyone (a rolled-back change costs a lookup, nothing
    more)."""
    namespaces = [NAMESPACE] if user_ids is None else [_user_namespace(pk) for pk in user_ids]
    for namespace in namespaces:
        invalidate_namespace(namespace, also_now=True)


class CachedPermissionsBackend(ModelBackend):
    """Django's ModelBackend (the same password check, the same rules for inactive users and objects), its
    permissions read through `grants`."""

    def get_all_permissions(self, user_obj: Any, obj: Any = None) -> set[str]:
        if not user_obj.is_active or user_obj.is_anonymous or obj is not None:
            return set()
        if not hasattr(user_obj, "_perm_cache"):
            user_obj._perm_cache = set(grants(user_obj).permissions)
        return user_obj._perm_cache  # type: ignore[no-any-return]
