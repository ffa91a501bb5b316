"""The import job: an admin upload above IMPORT_JOB_ROW_THRESHOLD rows, dry-run or imported by a worker."""

import io
import logging

from django.core.cache import cache
from django.core.exceptions import PermissionDenied

from portfolio_site.jobs.base import job

from .formats import import_permission_check
from .models import ImportUpload
from .progress import progress_reporter
from .run import run_import

logger = logging.getLogger(__name__)

# One run of one upload at a time, whatever the worker (a job may be delivered twice); longer than any import.
LOCK_SECONDS = 6 * 3600


@job(name="imports.run_upload")
def run_upload(*, upload_id: str, dry_run: bool) -> int | None:
    """Runs the engine on the stored upload as the user who uploaded it (their permissions and visibility apply),
    recording its progress in the cache and its batch on the upload; the batch's id, or None if there was nothing
    to do. Idempotent: an upload whose run has its batch already is not run again, and the import itself is one
    transaction (a retry after a failure starts from nothing written)."""
    upload = ImportUpload.objects.select_related("user").filter(pk=upload_id).first()
    if upload is None:
        return None  # discarded meanwhile (the user uploaded another file)
    done = upload.dry_run_batch_id if dry_run else upload.batch_id
    if done is not None:
        return done
    mode = "dry_run" if dry_run else "import"
    lock = f"imports:running:{upload_id}:{mode}"
    if not cache.add(lock, 1, timeout=LOCK_SECONDS):
        logger.warning("Import %s (%s) is already running elsewhere", upload_id, mode)
        return None
    try:
        try:
            import_permission_check(actor=upload.user, kind=upload.kind)  # again: it may have been taken away
        except PermissionDenied as error:
            ImportUpload.objects.filter(pk=upload.pk).update(error=f"{error} Nothing was imported.")
            return None
        ImportUpload.objects.filter(pk=upload.pk).update(error="")
        result = run_import(
            kind=upload.kind,
            stream=io.BytesIO(bytes(upload.content)),
            file_name=upload.file_name,
            actor=upload.user,
            dry_run=dry_run,
            on_progress=progress_reporter(str(upload.pk), mode),
        )
        if dry_run:
            ImportUpload.objects.filter(pk=upload.pk).update(dry_run_batch=result.batch)
        else:  # imported (or refused): the file is not needed any more, the batch is the record
            ImportUpload.objects.filter(pk=upload.pk).update(batch=result.batch, content=b"")
        return result.batch.pk
    except Exception as error:
        ImportUpload.objects.filter(pk=upload.pk).update(error=f"The import stopped: {type(error).__name__}.")
        raise
    finally:
        cache.delete(lock)
