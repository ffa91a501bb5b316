"""Job runs in the admin: read-only, filterable, scoped (see JobRunQuerySet.visible_to)."""

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from portfolio_site.admin_utils import ReadOnlyAdminMixin

from .models import JobRun


@admin.register(JobRun)
class JobRunAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ["started_at", "task", "outcome", "retries", "requested_by", "duration", "finished_at", "worker"]
    list_filter = ["outcome", "task", "started_at"]
    search_fields = ["task", "=job_id", "=request_id", "error"]
    list_select_related = ["requested_by"]
    date_hierarchy = "started_at"
    show_full_result_count = False  # a count over every run on each page, for nothing

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        return JobRun.objects.visible_to(request.user).select_related("requested_by")

    @admin.display(description="Duration")
    def duration(self, run: JobRun) -> Any:
        return run.duration
