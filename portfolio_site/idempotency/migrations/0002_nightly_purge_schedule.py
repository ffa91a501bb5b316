"""The default schedule of the nightly purge of expired idempotency keys (as the jobs app's own defaults:
portfolio_site/jobs/migrations/0002), which staff then edit in the admin (Periodic tasks)."""

from django.db import migrations

from portfolio_site.migration_operations import nightly_schedule


class Migration(migrations.Migration):
    dependencies = [
        ("idempotency", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        nightly_schedule(
            name="Nightly clean-up of expired idempotency keys",
            task="idempotency.purge_expired_keys",
            minute="0",
            hour="3",
        ),
    ]
