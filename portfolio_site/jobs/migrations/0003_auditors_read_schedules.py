"""Auditors read everything, the job schedules included (the runs they already read); they change nothing. The
schedules' admin offers its writing actions only with the change permission (`jobs/admin.py`)."""

from django.db import migrations

from accounts.roles import Role, grant_role_permissions, model_codenames

SCHEDULE_MODELS = ("periodictask", "intervalschedule", "crontabschedule", "solarschedule", "clockedschedule")


def grant(apps, schema_editor):
    codenames = [codename for model in SCHEDULE_MODELS for codename in model_codenames(model, "view")]
    grant_role_permissions(apps, "django_celery_beat", {Role.AUDITORS: codenames})


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0002_roles_and_default_schedules"),
        ("accounts", "0002_roles"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
