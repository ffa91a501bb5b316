"""The base viewsets: visibility first, then filters; and the response cache for reference data."""

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db.models import QuerySet
from rest_framework import mixins, viewsets
from rest_framework.request import Request
from rest_framework.response import Response

from portfolio_site.api.lean import columns
from portfolio_site.cache import versioned_get, versioned_set
from portfolio_site.scoping import check_scoped, scoped


class ScopedViewSetMixin:
    """Scopes the queryset by the caller's visibility before filters, search, ordering or the cache see it.

    Unconditionally: the model's QuerySet must have `visible_to(user)` (its owner's rule, or the explicit
    `ReferenceDataQuerySet` of assets and prices), or the viewset is refused with ImproperlyConfigured.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # Refused when the class is created (when the URLconf is imported, that is at startup and in every test
        # run) rather than on its first request: a wrongly scoped endpoint never serves anyone. A viewset that
        # builds its queryset in get_queryset() is checked on first use instead, by `scoped()`.
        super().__init_subclass__(**kwargs)
        queryset = getattr(cls, "queryset", None)
        if isinstance(queryset, QuerySet) and apps.models_ready:
            check_scoped(queryset)

    def get_queryset(self) -> QuerySet[Any]:
        return scoped(super().get_queryset(), self.request.user)  # type: ignore[misc,attr-defined]


class CachedReadMixin:
    """Caches list and detail responses when `cache_namespace` is set.

    The key holds the namespaces' versions (bumped by every write through the services), the caller's
    visibility (`cache_scope()`), the host and the full path with its query string. Only 200s are cached,
    and only after the permission checks have passed.
    """

    cache_namespace: str | None = None
    # Other namespaces whose writes change these responses too (a client shows its advisor's name).
    cache_depends_on: tuple[str, ...] = ()

    def cache_scope(self) -> str:
        # From the same QuerySet that scopes the rows, so a cached list of client rows can never be keyed as if it
        # were shared (reference data answers "shared").
        return self.get_queryset().visibility_key(self.request.user)  # type: ignore[attr-defined,no-any-return]

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self._cached(request, lambda: super(CachedReadMixin, self).list(request, *args, **kwargs))  # type: ignore[misc]

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self._cached(request, lambda: super(CachedReadMixin, self).retrieve(request, *args, **kwargs))  # type: ignore[misc]

    def _cached(self, request: Request, compute: Callable[[], Response]) -> Response:
        if self.cache_namespace is None:
            return compute()
        digest = hashlib.sha256("\n".join([self.cache_scope(), request.get_host(), request.get_full_path()]).encode())
        key = f"api:{self.cache_namespace}:{digest.hexdigest()}"
        data, versions = versioned_get(key, [self.cache_namespace, *self.cache_depends_on])
        if data is not None:
            return Response(data)
        response = compute()
        if response.status_code == 200:
            versioned_set(key, response.data, versions, timeout=settings.API_CACHE_SECONDS)
        return response


class LeanListMixin:
    """List pages read as plain rows: the `values()` of what the serializer shows (`lean.columns`), which its
    `LeanListSerializer` represents exactly as it would the model objects, without building one per row. For the
    lists that grow to millions of rows, where a page's Python work is most of its cost."""

    def paginate_queryset(self, queryset: QuerySet[Any, Any] | Sequence[Any]) -> list[Any] | None:
        if getattr(self, "action", None) == "list" and isinstance(queryset, QuerySet):
            names = columns(self.get_serializer_class())  # type: ignore[attr-defined]
            if names is not None:
                queryset = queryset.values(*names)
        return super().paginate_queryset(queryset)  # type: ignore[misc,no-any-return]


class ScopedModelViewSet(CachedReadMixin, ScopedViewSetMixin, viewsets.ModelViewSet):
    pass


class ScopedReadCreateViewSet(
    ScopedViewSetMixin,
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """For records that are posted once and never edited (the ledger)."""
