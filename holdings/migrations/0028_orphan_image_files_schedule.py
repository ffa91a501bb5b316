"""The default schedule of the nightly sweep of stored asset image files no row names (as the jobs app's own
defaults: portfolio_site/jobs/migrations/0002), which staff then edit in the admin (Periodic tasks)."""

from django.db import migrations

from portfolio_site.migration_operations import nightly_schedule


class Migration(migrations.Migration):
    dependencies = [
        ("holdings", "0027_asset_images"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [
        nightly_schedule(
            name="Nightly clean-up of asset image files no image names",
            task="holdings.purge_orphan_image_files",
            minute="15",
            hour="3",
        ),
    ]
