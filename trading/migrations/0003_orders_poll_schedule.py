"""The default schedule of the orders' periodic job (sending what waits, polling what is open, expiring day orders),
which staff then edit in the admin (Periodic tasks). Removing it there is kept: this runs once."""

from typing import Any

from django.db import migrations

NAME = "Send, poll and expire orders"


def create_schedule(apps: Any, schema_editor: Any) -> None:
    periodic_task = apps.get_model("django_celery_beat", "PeriodicTask")
    interval = apps.get_model("django_celery_beat", "IntervalSchedule")
    if periodic_task.objects.filter(name=NAME).exists():
        return
    every, _ = interval.objects.get_or_create(every=60, period="seconds")
    periodic_task.objects.create(name=NAME, task="trading.orders_poll", interval=every)


def remove_schedule(apps: Any, schema_editor: Any) -> None:
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("trading", "0002_constraints_and_roles"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_schedule, remove_schedule)]
