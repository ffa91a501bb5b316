"""The job plumbing's own jobs."""

import datetime

from django.conf import settings
from django.utils import timezone

from .base import job
from .heartbeat import heartbeat_record
from .models import JobRun


@job(name="jobs.heartbeat", record_runs=False, max_retries=0)
def heartbeat() -> dict[str, str]:
    """Every minute (a default schedule): proves to the readiness probe that a worker takes jobs."""
    return heartbeat_record()


@job(name="jobs.purge_job_runs")
def purge_job_runs() -> int:
    """Nightly (a default schedule): deletes the JobRuns that finished over JOBS_RUN_RETENTION_DAYS ago; frequent
    periodic jobs would otherwise grow the table without end. How many; a second run deletes nothing."""
    cutoff = timezone.now() - datetime.timedelta(days=settings.JOBS_RUN_RETENTION_DAYS)
    deleted, _ = JobRun.objects.filter(finished_at__lt=cutoff).delete()
    return deleted
