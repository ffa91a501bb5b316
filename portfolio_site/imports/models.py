from django.conf import settings
from django.db import models


class ImportBatch(models.Model):
    """One run of an import, whatever its outcome: what was read, what it did, who ran it."""

    class Outcome(models.TextChoices):
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed (nothing written)"
        DRY_RUN = "dry_run", "Dry run (nothing written)"

    kind = models.CharField(max_length=32, db_index=True)
    file_name = models.CharField(max_length=255)
    sha256 = models.CharField("SHA-256", max_length=64, db_index=True)
    rows_read = models.PositiveIntegerField(default=0)
    rows_created = models.PositiveIntegerField(default=0)
    rows_updated = models.PositiveIntegerField(default=0)
    rows_skipped = models.PositiveIntegerField(default=0, help_text="Already present and unchanged.")
    rows_rejected = models.PositiveIntegerField(default=0)
    outcome = models.CharField(max_length=16, choices=Outcome.choices)
    errors = models.TextField(blank=True, help_text="The first errors, one per line.")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="import_batches"
    )
    run_by = models.CharField(
        max_length=150, blank=True, help_text="Who ran it: the user, or the operating-system account."
    )
    started_at = models.DateTimeField(db_index=True)
    duration = models.DurationField()

    class Meta:
        ordering = ["-started_at"]
        verbose_name_plural = "import batches"
        permissions = [("run_import", "Can run imports")]

    def __str__(self) -> str:
        return f"{self.kind} from {self.file_name} ({self.get_outcome_display()}, {self.started_at:%Y-%m-%d %H:%M})"
