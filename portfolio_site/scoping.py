"""Which rows a door may serve to a user: the contract every model behind a scoped door keeps.

A door (the base API viewset, the scoped admin) applies `queryset.visible_to(user)` unconditionally, first. A
model's QuerySet gets that method from one of two places, and a door refuses a model that has neither:

- the owning app's rule, for rows that belong to an owner (here: a client, and everything that points at one);
- `ReferenceDataQuerySet`, which says out loud that every holder of the model's view permission sees every row
  (assets, prices). A model that points at the owner may not claim this: the door refuses it.

The owner model is named by `settings.SCOPE_OWNER_MODEL` ("clients.Client"), as `AUTH_USER_MODEL` names the user
model: this plumbing sits below the clients app and may not import it, and a setting is readable before any
app's `ready()` (the admin registers its ModelAdmins, and so runs these checks, before the clients app is ready).
"""

import functools
from typing import Any, Protocol, Self, TypeVar

from django.apps import apps
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

M = TypeVar("M", bound=models.Model)

# How far `owner_path` follows foreign keys: the longest real path (allocation → settlement → client) is short, and
# a bound keeps a cycle of nullable self-references from mattering.
MAX_OWNER_DEPTH = 4


class ScopedQuerySet(Protocol):
    """What a door needs of a QuerySet: the rows a user may see, and a key naming that set for caches."""

    def visible_to(self, user: Any) -> Self: ...

    def visibility_key(self, user: Any) -> str: ...


class ReferenceDataQuerySet(models.QuerySet[M]):
    """Rows that belong to no client: whoever holds the model's view permission sees them all.

    Declaring it is the point: a door serves nothing it was not told how to scope.
    """

    reference_data = True

    def visible_to(self, user: Any) -> Self:
        return self.all()

    def visibility_key(self, user: Any) -> str:
        return "shared"


def owner_model() -> type[models.Model]:
    return apps.get_model(settings.SCOPE_OWNER_MODEL)


@functools.cache
def owner_path(model: type[models.Model]) -> str | None:
    """The shortest lookup path from `model` to the owner model ("" for the owner itself, "portfolio__client" for a
    model that points at a portfolio), following forward foreign keys and one-to-ones; None when there is none.

    Cached per model: the answer depends only on the model graph, which does not change once apps are loaded.
    """
    owner = owner_model()
    frontier: list[tuple[type[models.Model], str]] = [(model, "")]
    seen = {model}
    for _ in range(MAX_OWNER_DEPTH + 1):
        next_frontier = []
        for current, path in frontier:
            if current is owner:
                return path
            for field in current._meta.get_fields():
                if not (field.many_to_one or field.one_to_one) or field.auto_created or not field.concrete:
                    continue  # reverse relations and the parent link of multi-table inheritance say nothing
                target = field.related_model
                if isinstance(target, type) and target not in seen:
                    seen.add(target)
                    next_frontier.append((target, f"{path}__{field.name}" if path else field.name))
        frontier = next_frontier
    return None


def is_owned(model: type[models.Model]) -> bool:
    return owner_path(model) is not None


@functools.cache
def _checked(model: type[models.Model], queryset_class: type[models.QuerySet[Any]]) -> None:
    path = owner_path(model)
    owned = f" (it points at {settings.SCOPE_OWNER_MODEL} through {path or 'itself'})" if path is not None else ""
    label = model._meta.label
    missing = [name for name in ("visible_to", "visibility_key") if not callable(getattr(queryset_class, name, None))]
    if missing:
        raise ImproperlyConfigured(
            f"{label} is served by a scoped door, but its QuerySet has no {' or '.join(missing)}{owned}: give it "
            "its owner's QuerySet, or ReferenceDataQuerySet if every row is for everyone with the view permission."
        )
    if path is not None and getattr(queryset_class, "reference_data", False):
        raise ImproperlyConfigured(f"{label} cannot be reference data{owned}: give it its owner's QuerySet.")


def check_scoped(queryset: models.QuerySet[Any]) -> None:
    """Refuse (ImproperlyConfigured) a QuerySet a door could not scope: no `visible_to`, or a model pointing at the
    owner that calls itself reference data. Cached per (model, QuerySet class), so it costs one check per process."""
    model: type[models.Model] = queryset.model
    _checked(model, type(queryset))


def scoped(queryset: models.QuerySet[M], user: Any) -> models.QuerySet[M]:
    """The rows of `queryset` the user may see; the one call every door makes before anything else."""
    check_scoped(queryset)
    return queryset.visible_to(user)  # type: ignore[attr-defined,no-any-return]
