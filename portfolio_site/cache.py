"""Versioned cache namespaces: a write bumps its namespace's version, which orphans every key built on it.

Simpler and cheaper than pattern deletes, and works the same on Redis and the local-memory cache. With
Redis down every read is a miss, so correctness never depends on the cache.
"""

import uuid
from collections.abc import Sequence

from django.core.cache import cache
from django.db import transaction


def _version_key(namespace: str) -> str:
    return f"ns-version:{namespace}"


def namespace_version(namespace: str) -> str:
    version = cache.get(_version_key(namespace))
    if version is None:
        version = uuid.uuid4().hex
        # add(), not set(): two processes starting a namespace at once must agree on one version.
        if not cache.add(_version_key(namespace), version, timeout=None):
            version = cache.get(_version_key(namespace)) or version
    return version


def namespace_versions(namespaces: Sequence[str]) -> list[str]:
    """`namespace_version` of each namespace, in order, read in one round trip (a namespace never started is
    started as `namespace_version` starts it)."""
    found = cache.get_many([_version_key(namespace) for namespace in namespaces])
    return [found.get(_version_key(namespace)) or namespace_version(namespace) for namespace in namespaces]


def invalidate_namespace(namespace: str, *, also_now: bool = False) -> None:
    """Bump the namespace once the surrounding transaction commits (a rolled-back write changes nothing); with
    `also_now`, at once as well, so that the rest of the transaction reads past what it changed (a reader that
    caches the old rows meanwhile does so under a version the commit's bump retires)."""

    def bump() -> None:
        cache.set(_version_key(namespace), uuid.uuid4().hex, timeout=None)

    if also_now:
        bump()
    transaction.on_commit(bump)
