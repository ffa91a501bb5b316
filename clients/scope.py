"""What each role may see of clients: the one rule, as one object per user.

Role membership is accounts' business (`accounts.roles`); which clients a role sees is this app's. Every filter,
cache key and per-object check about client visibility is read from a `ClientScope`, and every model that belongs
to a client gets its `visible_to(user)` from `ClientOwnedQuerySet`.
"""

from dataclasses import dataclass
from typing import Any, ClassVar, Self, TypeVar

from django.db import models

from accounts.roles import Role, is_advisor, role_names

M = TypeVar("M", bound=models.Model)

# Roles whose members see every client (as superusers do); an advisor sees the clients they advise.
ALL_CLIENTS_ROLES = frozenset({Role.OPERATIONS, Role.AUDITORS})


@dataclass(frozen=True)
class ClientScope:
    """Superusers, Operations and Auditors see every client; an advisor sees the clients they advise; anyone else
    sees none. `advisor_id` is set only in the advisor's case."""

    sees_all: bool
    advisor_id: int | None = None

    @classmethod
    def of(cls, user: Any) -> "ClientScope":
        """The user's scope, built once per user object (that is, once per request) from their cached roles."""
        cached = getattr(user, "_client_scope_cache", None)
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        # Superuser first: the command line's actor is a superuser with no groups to look up.
        if getattr(user, "is_superuser", False) or role_names(user) & ALL_CLIENTS_ROLES:
            scope = cls(sees_all=True)
        elif is_advisor(user):
            scope = cls(sees_all=False, advisor_id=user.pk)
        else:
            scope = cls(sees_all=False)
        if getattr(user, "is_authenticated", False):
            # Only a real user is cached on: the anonymous user is one shared object in some code paths.
            user._client_scope_cache = scope
        return scope

    def filter(self, *, through: str = "") -> models.Q:
        """The clients in scope as a filter on Client (`through=""`) or on a model reaching its client by the lookup
        path `through` ("client", "portfolio__client")."""
        if self.sees_all:
            return models.Q()
        if self.advisor_id is not None:
            return models.Q(**{f"{through}__advisor" if through else "advisor": self.advisor_id})
        return models.Q(pk__in=[])

    @property
    def cache_key(self) -> str:
        """A short name of what the filter lets through, for cache keys: equal keys, equal rows."""
        if self.sees_all:
            return "all"
        if self.advisor_id is not None:
            return f"advisor:{self.advisor_id}"
        return "none"

    def allows(self, client: Any) -> bool:
        """Whether a client (any object with an `advisor_id`) is in scope, without a query."""
        return self.sees_all or (self.advisor_id is not None and client.advisor_id == self.advisor_id)

    @property
    def may_hold_clients(self) -> bool:
        """Whether the user may have clients at all: create them, import them."""
        return self.sees_all or self.advisor_id is not None

    @property
    def names_only_themselves(self) -> bool:
        """Whether the user may name no member of staff but themselves (as a client's advisor, in a filter): only
        those who see every client learn who else works here."""
        return not self.sees_all


class ClientOwnedQuerySet(models.QuerySet[M]):
    """The QuerySet of every model that belongs to a client: `visible_to(user)` filters by the user's scope along
    `client_path`, the lookup from the model to its client ("" on Client itself)."""

    client_path: ClassVar[str]

    def visible_to(self, user: Any) -> Self:
        return self.filter(ClientScope.of(user).filter(through=self.client_path))

    def visibility_key(self, user: Any) -> str:
        return ClientScope.of(user).cache_key
