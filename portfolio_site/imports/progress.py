"""How far a running import has got, in the cache: its batch row cannot say, being written inside the run's one open
transaction (no other connection sees its counts before the end)."""

import time
from dataclasses import dataclass

from django.core.cache import cache

# Kept past the end of the longest import; the page stops reading it once the run has its batch.
PROGRESS_SECONDS = 24 * 3600


def _key(upload_id: str, mode: str) -> str:
    return f"imports:progress:{upload_id}:{mode}"


@dataclass(frozen=True)
class Progress:
    rows: int
    seconds: float

    @property
    def rows_per_second(self) -> int:
        return round(self.rows / self.seconds) if self.seconds > 0 else 0


def progress_reporter(upload_id: str, mode: str) -> "ProgressReporter":
    return ProgressReporter(_key(upload_id, mode))


class ProgressReporter:
    """The engine's `on_progress` callback (rows read, bytes read), every few thousand rows."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.started = time.time()
        cache.set(key, {"rows": 0, "started": self.started, "at": self.started}, timeout=PROGRESS_SECONDS)

    def __call__(self, rows: int, bytes_read: int) -> None:
        cache.set(self.key, {"rows": rows, "started": self.started, "at": time.time()}, timeout=PROGRESS_SECONDS)


def progress_of(upload_id: str, mode: str) -> Progress | None:
    """None before the job has started (or when the cache cannot say)."""
    found = cache.get(_key(upload_id, mode))
    if not isinstance(found, dict):
        return None
    return Progress(rows=int(found["rows"]), seconds=max(float(found["at"]) - float(found["started"]), 0.0))
