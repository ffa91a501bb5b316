from typing import Any

from django.conf import settings
from django.db import models

VIEW_ALL = "jobs.view_all_jobruns"


class JobRunQuerySet(models.QuerySet["JobRun"]):
    def visible_to(self, user: Any) -> "JobRunQuerySet":
        """A run's arguments may name clients (a portfolio to rebuild, an import's file): holders of
        `jobs.view_all_jobruns` (superusers; Operations and Auditors, who see every client) see every run; anyone
        else sees only the runs they asked for. A permission rather than the clients app's scope: this plumbing
        sits below the clients app and may not import it."""
        if not getattr(user, "is_authenticated", False):
            return self.none()
        if user.has_perm(VIEW_ALL):
            return self
        return self.filter(requested_by_id=user.pk)


class JobRun(models.Model):
    """One job, from its first start to its end: one row per job id, whatever its retries."""

    class Outcome(models.TextChoices):
        RUNNING = "running", "Running"
        RETRYING = "retrying", "Waiting to retry"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    task = models.CharField(max_length=200, db_index=True, help_text="The task's name.")
    job_id = models.CharField(max_length=64, unique=True, help_text="Celery's id of the job.")
    arguments = models.JSONField(default=dict, blank=True, help_text="Its arguments; secret ones are masked.")
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    request_id = models.CharField(max_length=64, blank=True, db_index=True, help_text="Of the request that asked.")
    outcome = models.CharField(max_length=16, choices=Outcome.choices, default=Outcome.RUNNING, db_index=True)
    error = models.TextField(blank=True, help_text="The last error (secrets masked).")
    retries = models.PositiveIntegerField(default=0)
    started_at = models.DateTimeField(db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True, help_text="The worker that ran it last.")

    objects = JobRunQuerySet.as_manager()

    class Meta:
        ordering = ["-started_at", "-pk"]
        permissions = [("view_all_jobruns", "Can see every user's job runs")]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(finished_at__isnull=True) | models.Q(finished_at__gte=models.F("started_at")),
                name="jobs_jobrun_finishes_after_start",
                violation_error_message="A job cannot finish before it starts.",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task} ({self.get_outcome_display()}, {self.started_at:%Y-%m-%d %H:%M:%S})"

    @property
    def duration(self) -> Any:
        return self.finished_at - self.started_at if self.finished_at else None
