"""Who sees job runs (Operations and Auditors: every run, as they see every client), and the default schedules of
the periodic jobs, which staff then edit in the admin (Periodic tasks). Removing one there is kept: this runs once."""

from django.db import migrations

from accounts.roles import Role, grant_role_permissions, model_codenames

# name, task, schedule: ("every", seconds) or ("cron", minute, hour)
DEFAULT_SCHEDULES = [
    ("Worker heartbeat", "jobs.heartbeat", ("every", 60)),
    ("Rebuild stale daily values", "holdings.daily_values_refresh", ("every", 60)),
    ("Nightly clean-up of ended security records", "accounts.purge_ended_security_records", ("cron", "30", "2")),
    ("Nightly clean-up of old job runs", "jobs.purge_job_runs", ("cron", "45", "2")),
    # The ECB publishes its reference rates around 16:00 CET; closes of the day are out by then too.
    ("Refresh market data", "holdings.refresh_market_data", ("cron", "0", "17")),
]


def grant(apps, schema_editor):
    codenames = [*model_codenames("jobrun", "view"), "view_all_jobruns"]
    grant_role_permissions(apps, "jobs", {Role.OPERATIONS: codenames, Role.AUDITORS: codenames})


def create_schedules(apps, schema_editor):
    periodic_task = apps.get_model("django_celery_beat", "PeriodicTask")
    interval = apps.get_model("django_celery_beat", "IntervalSchedule")
    crontab = apps.get_model("django_celery_beat", "CrontabSchedule")
    for name, task, schedule in DEFAULT_SCHEDULES:
        if periodic_task.objects.filter(name=name).exists():
            continue
        if schedule[0] == "every":
            every, _ = interval.objects.get_or_create(every=schedule[1], period="seconds")
            periodic_task.objects.create(name=name, task=task, interval=every)
        else:
            _, minute, hour = schedule
            cron, _ = crontab.objects.get_or_create(
                minute=minute, hour=hour, day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC"
            )
            periodic_task.objects.create(name=name, task=task, crontab=cron)


def remove_schedules(apps, schema_editor):
    periodic_task = apps.get_model("django_celery_beat", "PeriodicTask")
    periodic_task.objects.filter(name__in=[name for name, *_ in DEFAULT_SCHEDULES]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0001_initial"),
        ("accounts", "0002_roles"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.RunPython(grant, migrations.RunPython.noop),
        migrations.RunPython(create_schedules, remove_schedules),
    ]
