"""Migration operations shared by the apps: an index built while a large table stays writable, and a job's default
nightly schedule."""

from typing import Any

from django.contrib.postgres.operations import AddIndexConcurrently
from django.db import migrations


class AddIndexOnline(AddIndexConcurrently):
    """AddIndex that, on PostgreSQL, builds the index with CREATE INDEX CONCURRENTLY: a million-row ledger keeps
    taking postings while it is built, instead of being locked against writes for the build. Other databases get
    the plain CREATE INDEX (SQLite has no other). Its migration must say `atomic = False`, as for
    AddIndexConcurrently."""

    def describe(self) -> str:
        return f"Create index {self.index.name} on field(s) {', '.join(self.index.fields)} of model {self.model_name}"

    def database_forwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)
        else:
            super(AddIndexConcurrently, self).database_forwards(app_label, schema_editor, from_state, to_state)

    def database_backwards(self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any) -> None:
        if schema_editor.connection.vendor == "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)
        else:
            super(AddIndexConcurrently, self).database_backwards(app_label, schema_editor, from_state, to_state)


def nightly_schedule(*, name: str, task: str, minute: str, hour: str) -> migrations.RunPython:
    """Creates a job's default nightly schedule (UTC) in django-celery-beat, which staff then edit in the admin
    (Periodic tasks). One that exists by that name is left as it is, and so is its removal there: this runs once.
    The migration using it depends on django_celery_beat."""

    def create(apps: Any, schema_editor: Any) -> None:
        periodic_task = apps.get_model("django_celery_beat", "PeriodicTask")
        crontab = apps.get_model("django_celery_beat", "CrontabSchedule")
        if periodic_task.objects.filter(name=name).exists():
            return
        cron, _ = crontab.objects.get_or_create(
            minute=minute, hour=hour, day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC"
        )
        periodic_task.objects.create(name=name, task=task, crontab=cron)

    def remove(apps: Any, schema_editor: Any) -> None:
        apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=name).delete()

    return migrations.RunPython(create, remove)
