"""Counters over time windows, in the database: what lockouts, throttles and spent challenges remember.

Each counter is one row keyed by a name; a hit adds one within the current window or opens a new window
once the last has ended. A hit is one short transaction holding the row's lock, so concurrent hits on one
key are counted exactly on PostgreSQL and on SQLite alike.
"""

import datetime
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from accounts.models import SecurityCounter


@dataclass(frozen=True)
class Count:
    count: int
    window_ends_at: datetime.datetime

    def seconds_left(self, now: datetime.datetime | None = None) -> int:
        """Whole seconds until the window ends, at least 1 (a Retry-After of 0 invites a retry storm)."""
        remaining = (self.window_ends_at - (now or timezone.now())).total_seconds()
        return max(1, int(remaining) + 1)


@transaction.atomic
def counter_hit(*, key: str, window: datetime.timedelta) -> Count:
    """Adds one to the counter; a counter whose window has ended starts again at one with a new window."""
    now = timezone.now()
    # Inserting first (doing nothing if the row exists) leaves exactly one row to lock, with no race on creation.
    SecurityCounter.objects.bulk_create(
        [SecurityCounter(key=key, count=0, window_ends_at=now + window)], ignore_conflicts=True
    )
    row = SecurityCounter.objects.select_for_update().get(key=key)
    if row.window_ends_at <= now:
        row.count, row.window_ends_at = 0, now + window
    row.count += 1
    row.save(update_fields=["count", "window_ends_at"])
    return Count(row.count, row.window_ends_at)


def counter_get(*, key: str) -> Count | None:
    """The counter within its window; None if it was never hit or its window has ended."""
    row = SecurityCounter.objects.filter(key=key, window_ends_at__gt=timezone.now()).first()
    return None if row is None else Count(row.count, row.window_ends_at)


def counter_clear(*, key: str) -> None:
    SecurityCounter.objects.filter(key=key).delete()


def counters_purge(*, now: datetime.datetime | None = None) -> int:
    """Deletes the counters whose window has ended (they count nothing any more); how many."""
    deleted, _ = SecurityCounter.objects.filter(window_ends_at__lte=now or timezone.now()).delete()
    return deleted
