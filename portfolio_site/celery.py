"""The Celery application: `celery -A portfolio_site worker` / `beat` load it; tasks live in each app's tasks.py.

Its configuration is Django's settings under the CELERY_ prefix (portfolio_site/settings/base.py, "Job queue").
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portfolio_site.settings.dev")

app = Celery("portfolio_site")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Every installed app's tasks.py, and the job plumbing's own (heartbeat).
app.autodiscover_tasks()
