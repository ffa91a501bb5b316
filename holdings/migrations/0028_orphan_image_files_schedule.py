"""The default schedule of the nightly sweep of stored asset image files no row names (as the jobs app's own
defaults: portfolio_site/jobs/migrations/0002), which staff then edit in the admin (Periodic tasks). Removing it
there is kept: this runs once."""

from django.db import migrations

NAME = "Nightly clean-up of asset image files no image names"
TASK = "holdings.purge_orphan_image_files"


def create_schedule(apps, schema_editor):
    periodic_task = apps.get_model("django_celery_beat", "PeriodicTask")
    crontab = apps.get_model("django_celery_beat", "CrontabSchedule")
    if periodic_task.objects.filter(name=NAME).exists():
        return
    cron, _ = crontab.objects.get_or_create(
        minute="15", hour="3", day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC"
    )
    periodic_task.objects.create(name=NAME, task=TASK, crontab=cron)


def remove_schedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("holdings", "0027_asset_images"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        migrations.RunPython(create_schedule, remove_schedule),
    ]
