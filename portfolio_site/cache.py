"""Versioned cache namespaces: a write bumps its namespace's version, which retires every value cached under an
older one (`versioned_get` serves a value only with the versions it was stored with, read in the same round trip).

Simpler and cheaper than pattern deletes, and works the same on Redis and the local-memory cache. With
Redis down every read is a miss, so correctness never depends on the cache.
"""

import uuid
from collections.abc import Sequence
from typing import Any

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


def versioned_get(key: str, namespaces: Sequence[str]) -> tuple[Any, list[str]]:
    """What `versioned_set` stored under `key` while each of `namespaces` was at its current version (None when
    nothing was, or a namespace has moved on since), and those current versions: one round trip for both, where
    reading the versions first and then a key built on them takes two."""
    version_keys = [_version_key(namespace) for namespace in namespaces]
    found = cache.get_many([*version_keys, key])
    versions = [
        found.get(version_key) or namespace_version(namespace)
        for version_key, namespace in zip(version_keys, namespaces, strict=True)
    ]
    stored = found.get(key)
    if isinstance(stored, tuple) and len(stored) == 2 and stored[0] == versions:
        return stored[1], versions
    return None, versions


def versioned_set(key: str, value: Any, versions: list[str], *, timeout: int | None) -> None:
    """Stores `value` under `key` as of `versions`: those `versioned_get` gave before the value was read, so that a
    namespace bumped meanwhile (a write committed while it was computed) makes it a miss for every reader after."""
    cache.set(key, (versions, value), timeout=timeout)


def invalidate_namespace(namespace: str, *, also_now: bool = False) -> None:
    """Bump the namespace once the surrounding transaction commits (a rolled-back write changes nothing); with
    `also_now`, at once as well, so that the rest of the transaction reads past what it changed (a reader that
    caches the old rows meanwhile does so under a version the commit's bump retires)."""

    def bump() -> None:
        cache.set(_version_key(namespace), uuid.uuid4().hex, timeout=None)

    if also_now:
        bump()
    transaction.on_commit(bump)
