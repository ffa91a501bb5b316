"""Import batches in the admin (read-only), and an Import page: a dry run first, then the same file for real.

The page is a third door onto the engine `manage.py import` uses: it calls `run_import` as the signed-in user
(whose visibility applies) and records the same batches.
"""

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from tempfile import gettempdir, mkstemp
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from portfolio_site.admin_utils import ReadOnlyAdminMixin

from .formats import FORMATS, import_permission_check
from .models import ImportBatch, rows_models
from .run import run_import

RUN_IMPORT = "imports.run_import"
# Uploads wait here between the dry run and the confirmation. An abandoned one is removed a day later.
UPLOAD_DIR = Path(gettempdir()) / "portfolio-imports"
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
    """The file a user dry-ran, waiting for their confirmation: a temporary file, named in their session."""

    def __init__(self, request: HttpRequest) -> None:
        self.session = request.session
        self.key = f"imports.pending.{request.user.pk}"

    @property
    def data(self) -> dict[str, str] | None:
        return self.session.get(self.key)

    def save(self, upload: UploadedFile, kind: str) -> dict[str, str]:
        self.discard()
        UPLOAD_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
        _remove_abandoned_uploads()
        descriptor, name = mkstemp(prefix="upload-", suffix=".csv", dir=UPLOAD_DIR)
        digest = hashlib.sha256()
        with open(descriptor, "wb") as file:
            for chunk in upload.chunks():
                digest.update(chunk)
                file.write(chunk)
        data = {"path": name, "sha256": digest.hexdigest(), "kind": kind, "file_name": upload.name or "upload.csv"}
        self.session[self.key] = data
        return data

    def file(self) -> Path | None:
        """The pending file, if it is still where it was put."""
        data = self.data
        if data is None:
            return None
        file = Path(data["path"])
        return file if file.parent == UPLOAD_DIR and file.is_file() else None

    def discard(self) -> None:
        file = self.file()
        if file is not None:
            file.unlink(missing_ok=True)
        self.session.pop(self.key, None)


def _remove_abandoned_uploads() -> None:
    cutoff = time.time() - UPLOAD_MAX_AGE_SECONDS
    for file in UPLOAD_DIR.glob("upload-*.csv"):
        try:
            if file.stat().st_mtime < cutoff:
                file.unlink()
        except OSError:
            pass  # another process removed it first


def _sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


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
        with open(upload["path"], "rb") as stream:
            result = run_import(
                kind=upload["kind"], stream=stream, file_name=upload["file_name"], actor=request.user, dry_run=True
            )
        if not result.ok:
            pending.discard()  # nothing to confirm
        return self._render(request, ImportForm(initial={"kind": upload["kind"]}), result=result, upload=upload)

    def _confirm(self, request: HttpRequest, pending: PendingUpload) -> HttpResponse:
        page = reverse("admin:imports_importbatch_import")
        upload, file = pending.data, pending.file()
        if upload is None:
            messages.error(request, "There is no dry-run file to confirm: upload the file again.")
            return HttpResponseRedirect(page)
        if request.POST.get("sha256") != upload["sha256"]:
            # Another tab uploaded a newer file since this report was shown: that one waits for its own confirm.
            messages.error(request, "This is not the file of your latest dry run: upload it again.")
            return HttpResponseRedirect(page)
        if file is None or _sha256(file) != upload["sha256"]:
            pending.discard()
            messages.error(
                request, "The uploaded file is missing or has changed since its dry run: nothing was imported."
            )
            return HttpResponseRedirect(page)
        try:
            # Again: the permissions may have been taken away since the dry run.
            import_permission_check(actor=request.user, kind=upload["kind"])
        except PermissionDenied as error:
            pending.discard()
            messages.error(request, f"{error} Nothing was imported.")
            return HttpResponseRedirect(page)
        try:
            with file.open("rb") as stream:
                result = run_import(
                    kind=upload["kind"], stream=stream, file_name=upload["file_name"], actor=request.user
                )
        finally:
            pending.discard()
        batch = result.batch
        counts = (
            f"read {batch.rows_read}, created {batch.rows_created}, updated {batch.rows_updated}, "
            f"skipped {batch.rows_skipped}, rejected {batch.rows_rejected}"
        )
        if result.ok:
            messages.success(request, f"Imported {batch.kind} from {batch.file_name}: {counts}.")
        else:
            messages.error(
                request, f"{batch.kind} from {batch.file_name} failed and nothing was written ({counts}): see errors."
            )
        return HttpResponseRedirect(reverse("admin:imports_importbatch_change", args=[batch.pk]))

    def _render(
        self, request: HttpRequest, form: ImportForm, result: Any = None, upload: dict[str, str] | None = None
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
