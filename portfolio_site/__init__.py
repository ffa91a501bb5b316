# The Celery app is loaded with Django, so that `@shared_task`s bind to it and `transaction.on_commit` enqueues
# through its configuration in every process (web, worker, management commands).
from .celery import app as celery_app

__all__ = ["celery_app"]
