"""Test settings: fast hashing, in-memory email, and the local-memory cache unless REDIS_URL is set."""

import tempfile
from pathlib import Path

from .base import *  # noqa: F403

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *PASSWORD_HASHERS]  # noqa: F405
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}  # noqa: F405
DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
if REDIS_URL:  # noqa: F405
    # A prefix of its own so a test run never reads or clears a developer's cached data.
    CACHES["default"]["KEY_PREFIX"] = "portfolio-test"  # noqa: F405
LOGGING["root"]["level"] = "WARNING"  # noqa: F405
# Static files are served from the apps' folders (no collectstatic) outside production.
STATIC_ROOT = None
# Jobs run in the test process, at once (after the commit, as they are enqueued), even when REDIS_URL is set; the
# real-worker test (portfolio_site/jobs/tests/test_worker.py) turns this off for itself, and the several-process
# test (portfolio_site/tests/test_processes.py) for the gunicorn processes it starts (CELERY_TASK_ALWAYS_EAGER=false).
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=True)  # noqa: F405
CELERY_TASK_EAGER_PROPAGATES = True
# Uploaded files of a test run go to a folder of their own, never into a developer's media folder.
MEDIA_ROOT = Path(tempfile.gettempdir()) / "portfolio-test-media"
