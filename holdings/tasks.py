"""Celery tasks of the holdings app: thin wrappers that call services."""

import datetime
from typing import Any

from celery import shared_task

from holdings.market_data.services import market_data_raise_for_failures, market_data_refresh
from holdings.market_data.sources import SourceUnavailable


@shared_task(
    bind=True,
    name="holdings.refresh_market_data",
    # Only an unreachable source is retried (exponential backoff, jittered: waits of up to 1, 2, 4, 8, 16 minutes);
    # a source answering garbage fails at once: it answers the same garbage until someone looks.
    autoretry_for=(SourceUnavailable,),
    retry_backoff=60,
    retry_backoff_max=30 * 60,
    retry_jitter=True,
    max_retries=5,
)
def refresh_market_data(self: Any, source: str | None = None, since: str | None = None) -> list[dict[str, object]]:
    """`manage.py refresh_market_data` as a job: every source (or `source`), quotes from `since` (YYYY-MM-DD) on.
    Idempotent, so a retry re-reading a source that succeeded writes nothing again. Fails (SourceError) when a
    source answered garbage, naming it and why; retries (SourceUnavailable) when every failure may pass."""
    reports = market_data_refresh(
        sources=[source] if source else None, since=datetime.date.fromisoformat(since) if since else None
    )
    market_data_raise_for_failures(reports)
    return [report.as_dict() for report in reports]
