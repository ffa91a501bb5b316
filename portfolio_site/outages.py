"""What a request answers while the database is unreachable: 503 with a clear body and Retry-After, never a 500
with a trace. The database comes back by itself (each request opens or health-checks its connection), so the
client is told to retry rather than that the server is broken."""

import sys

from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, HttpResponseServerError, JsonResponse
from django.views.defaults import server_error

# How long a client should wait before retrying (a restart or a failover of PostgreSQL takes seconds).
RETRY_AFTER_SECONDS = 5
DATABASE_UNAVAILABLE = "The database is unavailable for a moment; nothing was changed. Retry in a few seconds."

# What psycopg raises when it cannot reach the server or loses the connection.
DATABASE_OUTAGES = (OperationalError, InterfaceError)


def is_database_outage(exc: BaseException | None) -> bool:
    return isinstance(exc, DATABASE_OUTAGES)


def database_unavailable(request: HttpRequest) -> HttpResponse:
    """JSON for the API (DRF's error shape), a plain page for the admin and everything else."""
    response: HttpResponse
    if request.path.startswith("/api/"):
        response = JsonResponse({"detail": DATABASE_UNAVAILABLE}, status=503)
    else:
        response = HttpResponse(
            f"<!doctype html><title>Service unavailable</title><h1>Service unavailable</h1><p>{DATABASE_UNAVAILABLE}"
            "</p>",
            status=503,
        )
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def handler500(request: HttpRequest) -> HttpResponse | HttpResponseServerError:
    """Django's 500 view, except for an exception that is a database outage (raised in a view or in a middleware,
    outside DRF's exception handler): Django calls this while the exception is being handled."""
    if is_database_outage(sys.exc_info()[1]):
        return database_unavailable(request)
    return server_error(request)
