"""The holdings app's jobs: thin wrappers around its services (see portfolio_site.jobs for how a job is written)."""

import datetime

from holdings.market_data.services import market_data_raise_for_failures, market_data_refresh
from holdings.market_data.sources import SourceUnavailable
from portfolio_site.jobs.base import TRANSIENT_ERRORS, job

from . import services


@job(name="holdings.daily_values_refresh")
def daily_values_refresh(*, portfolio_ids: list[int] | None = None, until: str | None = None) -> int:
    """Rebuilds the daily value table of every stale portfolio (or of `portfolio_ids`) from its earliest changed day
    (`history_changed_from`, which every back-dated write lowers) through `until` (today by default); how many
    portfolios it rebuilt. Every minute by default (a schedule editable in the admin), so a burst of back-dated
    writes costs one rebuild. Reads stay right meanwhile: `holdings.selectors.daily_values_of` rebuilds, in the
    request, what this job has not reached yet. Idempotent: a second run finds nothing stale and rebuilds nothing.
    """
    day = datetime.date.fromisoformat(until) if until else None
    return services.daily_values_refresh(portfolio_ids=portfolio_ids, until=day)


@job(
    name="holdings.refresh_market_data",
    # An unreachable source is retried (exponential backoff, jittered: waits of up to 1, 2, 4, 8, 16 minutes); a
    # source answering garbage fails at once: it answers the same garbage until someone looks.
    autoretry_for=(*TRANSIENT_ERRORS, SourceUnavailable),
    retry_backoff=60,
    retry_backoff_max=30 * 60,
    max_retries=5,
)
def refresh_market_data(*, source: str | None = None, since: str | None = None) -> list[dict[str, object]]:
    """`manage.py refresh_market_data` as a job: every source (or `source`), quotes from `since` (YYYY-MM-DD) on.
    Idempotent, so a retry re-reading a source that succeeded writes nothing again. Fails (SourceError) when a
    source answered garbage, naming it and why; retries (SourceUnavailable) when every failure may pass."""
    reports = market_data_refresh(
        sources=[source] if source else None, since=datetime.date.fromisoformat(since) if since else None
    )
    market_data_raise_for_failures(reports)
    return [report.as_dict() for report in reports]
