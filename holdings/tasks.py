"""The holdings app's jobs: thin wrappers around its services (see portfolio_site.jobs for how a job is written)."""

import datetime

from portfolio_site.jobs.base import job

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
