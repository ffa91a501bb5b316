"""Liveness and readiness probes for the load balancer and the container's HEALTHCHECK."""

import logging
import uuid

from django.core.cache import cache
from django.db import DatabaseError, connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

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


@never_cache
@require_GET
def ready(request: HttpRequest) -> JsonResponse:
    """503 without the database; 200 "degraded" without the cache (it only costs speed)."""
    database, cache_up = _database_ok(), _cache_ok()
    components = {"database": "ok" if database else "down", "cache": "ok" if cache_up else "down"}
    if not database:
        return JsonResponse({"status": "down", "components": components}, status=503)
    return JsonResponse({"status": "ok" if cache_up else "degraded", "components": components})
