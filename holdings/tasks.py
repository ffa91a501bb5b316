"""The holdings app's jobs: thin wrappers around its services (see portfolio_site.jobs for how a job is written)."""

import datetime
from typing import Any

from holdings.images import services as image_services
from holdings.images.describers import DescriberUnavailable
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


@job(
    name="holdings.describe_asset_image",
    bind=True,
    # A describer that cannot be reached or is busy is retried (exponential backoff, jittered: waits of up to 30 s,
    # 1, 2 minutes); one that answered something unusable fails the proposal at once, as asking again would.
    autoretry_for=(*TRANSIENT_ERRORS, DescriberUnavailable),
    retry_backoff=image_services.DESCRIBE_RETRY_BACKOFF,
    retry_backoff_max=image_services.DESCRIBE_RETRY_BACKOFF_MAX,
    max_retries=image_services.DESCRIBE_MAX_RETRIES,
)
def describe_asset_image(self: Any, *, proposal_id: int) -> str:
    """Describes a proposal's image with the configured describer and stores the whole answer as the proposed
    text, or why there is none; the proposal's status. Idempotent: a proposal already described is left alone."""
    final_attempt = (self.request.retries or 0) >= self.max_retries
    return image_services.description_run(proposal_id=proposal_id, final_attempt=final_attempt)


@job(name="holdings.purge_orphan_image_files")
def purge_orphan_image_files() -> int:
    """Nightly (a default schedule): deletes stored asset image files that no image names (left by a transaction
    rolled back around an upload), once an hour old; how many. Also fails the description proposals left in flight
    by a job that died (see `stale_in_flight_fail`). Idempotent: a second run finds none."""
    image_services.stale_in_flight_fail()
    return image_services.orphan_files_delete()
