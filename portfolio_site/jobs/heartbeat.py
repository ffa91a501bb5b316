"""The workers' heartbeat: a periodic job writes the time, the readiness probe reads how old it is."""

import datetime
import os
import socket

from django.core.cache import cache
from django.utils import timezone

HEARTBEAT_KEY = "jobs:heartbeat"


def heartbeat_record() -> dict[str, str]:
    beat = {"at": timezone.now().isoformat(), "worker": f"{socket.gethostname()}:{os.getpid()}"}
    # Kept a day: an older one says as much as none.
    cache.set(HEARTBEAT_KEY, beat, timeout=24 * 3600)
    return beat


def heartbeat_age() -> datetime.timedelta | None:
    """Since the last heartbeat any worker wrote; None if there is none (or the cache cannot say)."""
    beat = cache.get(HEARTBEAT_KEY)
    if not isinstance(beat, dict) or "at" not in beat:
        return None
    return timezone.now() - datetime.datetime.fromisoformat(beat["at"])
