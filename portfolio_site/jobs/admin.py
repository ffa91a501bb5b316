"""Job runs in the admin: read-only, filterable, scoped (see JobRunQuerySet.visible_to); and the schedules' admin,
whose writing actions need the change permission."""

from typing import Any

import django_celery_beat.admin as beat_admin
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django_celery_beat.models import PeriodicTask

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


# django-celery-beat's actions (enable, disable, toggle, run now) declare no permission, so Django offers them to
# anyone who may only view the schedules (Auditors). Importing its admin (above) registers it before this module
# runs, so that it can be replaced by one whose writing actions need the change permission, as its form does.
SCHEDULE_WRITING_ACTIONS = ("enable_tasks", "disable_tasks", "toggle_tasks", "run_tasks")


class PeriodicTaskAdmin(beat_admin.PeriodicTaskAdmin):
    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions: dict[str, Any] = super().get_actions(request)
        if not self.has_change_permission(request):
            # A posted action must be among these to run, so one left out here is refused too.
            for name in SCHEDULE_WRITING_ACTIONS:
                actions.pop(name, None)
        return actions


admin.site.unregister(PeriodicTask)
admin.site.register(PeriodicTask, PeriodicTaskAdmin)
