"""Liveness and readiness probes for the load balancer and the container's HEALTHCHECK."""

import logging
import uuid
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from portfolio_site.celery import app as celery_app
from portfolio_site.jobs.heartbeat import heartbeat_age
from portfolio_site.outages import RETRY_AFTER_SECONDS

logger = logging.getLogger(__name__)


@never_cache
@require_GET
def live(request: HttpRequest) -> JsonResponse:
    """The process answers; touches nothing else."""
    return JsonResponse({"status": "ok"})


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except DatabaseError:
        logger.exception("Readiness: database unreachable")
        return False


def _cache_ok() -> bool:
    key, token = f"health:{uuid.uuid4().hex}", uuid.uuid4().hex
    try:
        cache.set(key, token, timeout=5)
        ok = cache.get(key) == token
        cache.delete(key)
        return ok
    except Exception:  # A cache backend may raise anything on an outage; readiness must still answer.
        logger.exception("Readiness: cache unreachable")
        return False


def _broker_ok() -> bool:
    try:
        with celery_app.connection_for_write() as connection_:
            connection_.ensure_connection(max_retries=1, interval_start=0, interval_step=0.2, timeout=1)
        return True
    except Exception:  # kombu raises its own and the transport's errors; readiness must still answer
        logger.exception("Readiness: job broker unreachable")
        return False


def _jobs() -> tuple[bool, dict[str, Any]]:
    """The broker, and how long ago a worker last proved it takes jobs (its heartbeat job). Without a broker (a bare
    development machine) jobs run in the web process: nothing to check."""
    if celery_app.conf.task_always_eager and not settings.CELERY_BROKER_URL:
        return True, {"broker": "none (jobs run in-process)"}
    broker = _broker_ok()
    age = heartbeat_age()
    fresh = age is not None and age.total_seconds() <= settings.JOBS_HEARTBEAT_MAX_AGE_SECONDS
    workers = {
        "status": "ok" if fresh else "stale" if age is not None else "none",
        "last_heartbeat_seconds_ago": round(age.total_seconds()) if age is not None else None,
    }
    return broker and fresh, {"broker": "ok" if broker else "down", "workers": workers}


@never_cache
@require_GET
def ready(request: HttpRequest) -> JsonResponse:
    """503 without the database; 200 "degraded" without the cache (it only costs speed), without the job broker or
    without a recent worker heartbeat (jobs wait; requests are still served, so the app stays in rotation)."""
    database, cache_up = _database_ok(), _cache_ok()
    jobs_ok, jobs = _jobs()
    components: dict[str, Any] = {"database": "ok" if database else "down", "cache": "ok" if cache_up else "down"}
    components["jobs"] = jobs
    if not database:
        down = JsonResponse({"status": "down", "components": components}, status=503)
        down["Retry-After"] = str(RETRY_AFTER_SECONDS)  # as every request answers while the database is away
        return down
    return JsonResponse({"status": "ok" if cache_up and jobs_ok else "degraded", "components": components})
