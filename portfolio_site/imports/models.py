import uuid

from django.apps import apps
from django.conf import settings
from django.db import models
from django.utils import timezone

from portfolio_site.history import Door


class ImportBatch(models.Model):
    """One run of an import, whatever its outcome: what was read, what it did, who ran it.

    Created (running) when the run starts, so that every row the run creates carries its id (`import_batch` on
    each model an import writes: which file a row came from); its outcome and counts are filled in at the end.
    """

    class Outcome(models.TextChoices):
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed (nothing written)"
        DRY_RUN = "dry_run", "Dry run (nothing written)"

    kind = models.CharField(max_length=32, db_index=True)
    file_name = models.CharField(max_length=255)
    sha256 = models.CharField("SHA-256", max_length=64, db_index=True, blank=True, help_text="Known once read.")
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
    # The batch is the change history's one entry for the rows it wrote (portfolio_site.history.suppressed).
    door = models.CharField(max_length=8, choices=Door.choices, blank=True, help_text="Admin, API, command or job.")
    duration = models.DurationField(null=True, blank=True, help_text="Empty while running.")

    class Meta:
        ordering = ["-started_at"]
        verbose_name_plural = "import batches"
        permissions = [("run_import", "Can run imports")]

    def __str__(self) -> str:
        return f"{self.kind} from {self.file_name} ({self.get_outcome_display()}, {self.started_at:%Y-%m-%d %H:%M})"


def import_batch_field() -> "models.ForeignKey[ImportBatch | None, ImportBatch | None]":
    """The batch a row was created by, on every model an import creates rows of (provenance: which file it came
    from; empty for rows made through the API or the admin). Set on create only: an update keeps the origin.

    PROTECT: a batch is the record of where rows came from, so a batch that created rows is never deleted (the
    admin shows batches read-only); SET_NULL would erase provenance silently. Indexed: a run finds its own rows
    through it (ledger.importers), and the admin counts a batch's rows.
    """
    return models.ForeignKey(
        ImportBatch,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
        db_index=True,
        help_text="The import batch that created this row, if an import did.",
    )


def rows_models() -> list[type[models.Model]]:
    """Every model whose rows carry the batch that created them (found by the field, so a new one is not missed)."""
    return [
        model
        for model in apps.get_models()
        if any(
            getattr(f, "related_model", None) is ImportBatch and f.name == "import_batch" for f in model._meta.fields
        )
    ]


class ImportUpload(models.Model):
    """A file uploaded on the admin's Import page, kept in the database from its dry run to its confirmation, and
    while a job imports it: any app server takes the confirmation and any worker reads the file (a temporary
    folder is one machine's). Deleted once imported, or a day after it was abandoned."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=32)
    file_name = models.CharField(max_length=255)
    sha256 = models.CharField("SHA-256", max_length=64)
    size = models.PositiveBigIntegerField(help_text="Bytes.")
    rows = models.PositiveIntegerField(help_text="Lines after the header (rows, unless cells hold line breaks).")
    content = models.BinaryField()
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    dry_run_batch = models.ForeignKey(ImportBatch, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    batch = models.ForeignKey(
        ImportBatch, on_delete=models.SET_NULL, null=True, blank=True, related_name="+", help_text="The real run's."
    )
    job = models.CharField(
        max_length=8, blank=True, choices=[("dry_run", "Dry run"), ("import", "Import")], help_text="Sent to a job."
    )
    error = models.TextField(blank=True, help_text="Why the job stopped, if it did without a batch to say so.")

    def __str__(self) -> str:
        return f"{self.kind} from {self.file_name} ({self.size} bytes)"
