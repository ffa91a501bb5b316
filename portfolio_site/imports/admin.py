"""Import batches in the admin (read-only), and an Import page: a dry run first, then the same file for real.

The page is a third door onto the engine `manage.py import` uses: it calls `run_import` as the signed-in user
(whose visibility applies) and records the same batches.
"""

import datetime
import hashlib
import io
from collections.abc import Iterator
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import UploadedFile
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone

from portfolio_site.admin_utils import ReadOnlyAdminMixin
from portfolio_site.jobs.base import enqueue

from .formats import FORMATS, import_permission_check
from .models import ImportBatch, ImportUpload, rows_models
from .progress import progress_of
from .run import ImportResult, run_import
from .tasks import run_upload

RUN_IMPORT = "imports.run_import"
# An upload waits in the database between the dry run and the confirmation; an abandoned one is removed a day later.
UPLOAD_MAX_AGE_SECONDS = 24 * 3600


def _kind_choices() -> Iterator[tuple[str, str]]:
    for kind in sorted(FORMATS):
        yield kind, kind


class ImportForm(forms.Form):
    kind = forms.ChoiceField(choices=_kind_choices, help_text="What the file holds (the columns of each are below).")
    file = forms.FileField(
        help_text="CSV, UTF-8 (with or without BOM), ',' or ';' delimited, a header row naming the columns."
    )


class PendingUpload:
    """The file a user dry-ran, waiting for their confirmation: an ImportUpload row, named in their session."""

    def __init__(self, request: HttpRequest) -> None:
        self.session = request.session
        self.user_id: int = request.user.pk or 0  # the admin's views admit logged-in staff only
        self.key = f"imports.pending.{request.user.pk}"

    @property
    def data(self) -> dict[str, str] | None:
        return self.session.get(self.key)

    def save(self, upload: UploadedFile, kind: str) -> ImportUpload:
        self.discard()
        _remove_abandoned_uploads()
        content = b"".join(upload.chunks())
        lines = content.count(b"\n") + (0 if content.endswith(b"\n") or not content else 1)
        stored = ImportUpload.objects.create(
            user_id=self.user_id,
            kind=kind,
            file_name=(upload.name or "upload.csv")[:255],
            sha256=hashlib.sha256(content).hexdigest(),
            size=len(content),
            rows=max(lines - 1, 0),
            content=content,
        )
        self.session[self.key] = {
            "upload": str(stored.pk),
            "sha256": stored.sha256,
            "kind": kind,
            "file_name": stored.file_name,
        }
        return stored

    def upload(self) -> ImportUpload | None:
        """The pending upload, if it is still stored (and still this user's)."""
        data = self.data
        if data is None:
            return None
        return ImportUpload.objects.filter(pk=data["upload"], user_id=self.user_id, job="").first()

    def forget(self) -> None:
        """Out of the session; the row stays (a job is importing it)."""
        self.session.pop(self.key, None)

    def discard(self) -> None:
        data = self.data
        if data is not None:
            ImportUpload.objects.filter(pk=data["upload"], user_id=self.user_id, job="").delete()
        self.forget()


def _remove_abandoned_uploads() -> None:
    cutoff = timezone.now() - datetime.timedelta(seconds=UPLOAD_MAX_AGE_SECONDS)
    ImportUpload.objects.filter(created_at__lt=cutoff).delete()


def _result_of(batch: ImportBatch) -> ImportResult:
    """A finished job's report, from its batch (which keeps the first errors)."""
    issues = [line for line in batch.errors.splitlines() if line]
    return ImportResult(batch, issues, max(batch.rows_rejected, len(issues)))  # type: ignore[arg-type]


@admin.register(ImportBatch)
class ImportBatchAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Every run of an import, whatever door it came through. Read-only: batches are a record."""

    list_display = [
        "started_at",
        "kind",
        "file_name",
        "outcome",
        "rows_read",
        "rows_created",
        "rows_updated",
        "rows_skipped",
        "rows_rejected",
        "run_by",
        "duration",
    ]
    list_filter = ["kind", "outcome"]
    search_fields = ["file_name", "^sha256"]
    list_select_related = ["user"]
    change_list_template = "admin/imports/change_list.html"
    readonly_fields = ["rows_from_this_file"]

    @admin.display(description="Rows from this file, as stored now")
    def rows_from_this_file(self, batch: ImportBatch) -> str:
        """On the batch's own page only (one count per model, by the indexed `import_batch`): the changelist keeps
        its constant query count, and rows_created says what the run did."""
        counts = [
            f"{model._meta.verbose_name_plural}: {count}"
            for model in rows_models()
            if (count := model._default_manager.filter(import_batch=batch).count())
        ]
        return "; ".join(counts) or "none"

    def has_run_import_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm(RUN_IMPORT)

    def get_urls(self) -> list[URLPattern]:
        return [
            path("import/", self.admin_site.admin_view(self.import_view), name="imports_importbatch_import"),
            path(
                "import/<uuid:upload_id>/",
                self.admin_site.admin_view(self.progress_view),
                name="imports_importbatch_progress",
            ),
            *super().get_urls(),
        ]

    def changelist_view(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        extra = {"has_run_import_permission": self.has_run_import_permission(request), **(extra_context or {})}
        return super().changelist_view(request, extra)

    # --- The Import page --------------------------------------------------------------------------------------

    def import_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_run_import_permission(request):
            raise PermissionDenied
        pending = PendingUpload(request)
        if request.method == "POST" and "_confirm" in request.POST:
            return self._confirm(request, pending)
        form = ImportForm(request.POST or None, request.FILES or None)
        if request.method != "POST" or not form.is_valid():
            return self._render(request, form)
        try:
            import_permission_check(actor=request.user, kind=form.cleaned_data["kind"])
        except PermissionDenied as error:
            form.add_error("kind", str(error))
            return self._render(request, form)
        upload = pending.save(form.cleaned_data["file"], form.cleaned_data["kind"])
        if upload.rows > settings.IMPORT_JOB_ROW_THRESHOLD:
            return self._send_to_job(request, pending, upload, dry_run=True)
        result = run_import(
            kind=upload.kind,
            stream=io.BytesIO(upload.content),
            file_name=upload.file_name,
            actor=request.user,
            dry_run=True,
        )
        if not result.ok:
            pending.discard()  # nothing to confirm
        return self._render(request, ImportForm(initial={"kind": upload.kind}), result=result, upload=upload)

    def _confirm(self, request: HttpRequest, pending: PendingUpload) -> HttpResponse:
        page = reverse("admin:imports_importbatch_import")
        data, upload = pending.data, pending.upload()
        if data is None:
            messages.error(request, "There is no dry-run file to confirm: upload the file again.")
            return HttpResponseRedirect(page)
        if request.POST.get("sha256") != data["sha256"]:
            # Another tab uploaded a newer file since this report was shown: that one waits for its own confirm.
            messages.error(request, "This is not the file of your latest dry run: upload it again.")
            return HttpResponseRedirect(page)
        if upload is None or hashlib.sha256(upload.content).hexdigest() != data["sha256"]:
            pending.discard()
            messages.error(
                request, "The uploaded file is missing or has changed since its dry run: nothing was imported."
            )
            return HttpResponseRedirect(page)
        try:
            # Again: the permissions may have been taken away since the dry run.
            import_permission_check(actor=request.user, kind=upload.kind)
        except PermissionDenied as error:
            pending.discard()
            messages.error(request, f"{error} Nothing was imported.")
            return HttpResponseRedirect(page)
        if upload.rows > settings.IMPORT_JOB_ROW_THRESHOLD:
            return self._send_to_job(request, pending, upload, dry_run=False)
        try:
            result = run_import(
                kind=upload.kind, stream=io.BytesIO(upload.content), file_name=upload.file_name, actor=request.user
            )
        finally:
            pending.discard()
        return self._finished(request, result.batch)

    def _finished(self, request: HttpRequest, batch: ImportBatch) -> HttpResponse:
        counts = (
            f"read {batch.rows_read}, created {batch.rows_created}, updated {batch.rows_updated}, "
            f"skipped {batch.rows_skipped}, rejected {batch.rows_rejected}"
        )
        if batch.outcome == ImportBatch.Outcome.SUCCEEDED:
            messages.success(request, f"Imported {batch.kind} from {batch.file_name}: {counts}.")
        else:
            messages.error(
                request, f"{batch.kind} from {batch.file_name} failed and nothing was written ({counts}): see errors."
            )
        return HttpResponseRedirect(reverse("admin:imports_importbatch_change", args=[batch.pk]))

    # --- Large files: a job, and a page that follows it ----------------------------------------------------------

    def _send_to_job(
        self, request: HttpRequest, pending: PendingUpload, upload: ImportUpload, *, dry_run: bool
    ) -> HttpResponse:
        upload.job = "dry_run" if dry_run else "import"
        upload.save(update_fields=["job"])
        pending.forget()  # the job owns the row now; the progress page names it
        enqueue(run_upload, requested_by=request.user, upload_id=str(upload.pk), dry_run=dry_run)
        return HttpResponseRedirect(reverse("admin:imports_importbatch_progress", args=[upload.pk]))

    def progress_view(self, request: HttpRequest, upload_id: Any) -> HttpResponse:
        if not self.has_run_import_permission(request):
            raise PermissionDenied
        upload = ImportUpload.objects.filter(pk=upload_id, user_id=request.user.pk or 0).exclude(job="").first()
        if upload is None:
            raise Http404("No such import of yours.")
        dry_run = upload.job == "dry_run"
        batch = upload.dry_run_batch if dry_run else upload.batch
        if batch is not None and not dry_run:
            upload.delete()  # imported: the batch is the record now
            return self._finished(request, batch)
        if batch is not None:
            # The dry run is over: its report, and (if it passed) the confirmation, as for a small file.
            upload.job = ""
            upload.save(update_fields=["job"])
            pending = PendingUpload(request)
            pending.discard()
            request.session[pending.key] = {
                "upload": str(upload.pk),
                "sha256": upload.sha256,
                "kind": upload.kind,
                "file_name": upload.file_name,
            }
            result = _result_of(batch)
            if not result.ok:
                pending.discard()
            return self._render(request, ImportForm(initial={"kind": upload.kind}), result=result, upload=upload)
        progress = progress_of(str(upload.pk), upload.job)
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"{'Dry run' if dry_run else 'Import'} of {upload.file_name}",
            "upload": upload,
            "progress": progress,
            "has_view_permission": self.has_view_permission(request),
            "refresh_seconds": 2,
        }
        return TemplateResponse(request, "admin/imports/progress.html", context)

    def _render(
        self, request: HttpRequest, form: ImportForm, result: Any = None, upload: ImportUpload | None = None
    ) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Import a file",
            "form": form,
            "result": result,
            "upload": upload,
            "more_issues": result.issue_count - len(result.issues) if result is not None else 0,
            "has_view_permission": self.has_view_permission(request),
            # Plain data: a template would try to call a format class.
            "formats": [
                {"kind": kind, "description": FORMATS[kind].description, "columns": FORMATS[kind].columns}
                for kind in sorted(FORMATS)
            ],
        }
        return TemplateResponse(request, "admin/imports/import.html", context)
