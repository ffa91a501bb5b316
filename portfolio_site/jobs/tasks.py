"""The job plumbing's own jobs."""

from .base import job
from .heartbeat import heartbeat_record


@job(name="jobs.heartbeat", record_runs=False, max_retries=0)
def heartbeat() -> dict[str, str]:
    """Every minute (a default schedule): proves to the readiness probe that a worker takes jobs."""
    return heartbeat_record()
