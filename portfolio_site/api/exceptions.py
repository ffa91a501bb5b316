"""Turns domain and database errors into DRF's error shapes with the right status, never a 500."""

import logging
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError
from django.db.models import ProtectedError, RestrictedError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found
from rest_framework import exceptions, status
from rest_framework.response import Response
from rest_framework.serializers import as_serializer_error
from rest_framework.settings import api_settings
from rest_framework.views import exception_handler as drf_exception_handler

from portfolio_site.errors import ConflictError
from portfolio_site.outages import DATABASE_UNAVAILABLE, RETRY_AFTER_SECONDS, is_database_outage

logger = logging.getLogger(__name__)


class Conflict(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The request conflicts with the current state."
    default_code = "conflict"


class Unavailable(exceptions.APIException):
    """503: a service the request needs (the database, a broker, an identity provider) did not answer, and nothing
    changed. `wait`, the seconds to wait before trying again, is the Retry-After header DRF's handler writes."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    wait: int

    def __init__(self, detail: Any = None, code: str | None = None, *, wait: int | None = None) -> None:
        super().__init__(detail, code)
        if wait is not None:
            self.wait = wait


class DatabaseUnavailable(Unavailable):
    default_detail = DATABASE_UNAVAILABLE
    default_code = "database_unavailable"
    wait = RETRY_AFTER_SECONDS


def _validation_error(exc: DjangoValidationError) -> exceptions.ValidationError:
    """Django's errors in DRF's shape: a model-wide error (Django's `__all__`) under `non_field_errors`."""
    detail = as_serializer_error(exc)
    if NON_FIELD_ERRORS in detail:
        messages = detail.pop(NON_FIELD_ERRORS)
        detail[api_settings.NON_FIELD_ERRORS_KEY] = [*detail.get(api_settings.NON_FIELD_ERRORS_KEY, []), *messages]
    return exceptions.ValidationError(detail)


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, DjangoValidationError):
        exc = _validation_error(exc)
    elif isinstance(exc, ConflictError):
        exc = Conflict(exc.message)
    elif isinstance(exc, ProtectedError | RestrictedError):
        exc = Conflict("This record is still referenced by other records and cannot be deleted.")
    elif isinstance(exc, IntegrityError):
        # A constraint caught what validation did not (usually a race between two writers). The
        # message names the constraint, never the SQL.
        logger.warning("Integrity error reached the API: %s", exc)
        exc = Conflict("The change conflicts with existing data (a uniqueness or integrity rule refused it).")
    elif is_database_outage(exc):
        # PostgreSQL unreachable (or the connection lost mid-request): the client retries; not a bug to trace.
        logger.error("Database unavailable: %s", exc)
        exc = DatabaseUnavailable()
    return drf_exception_handler(exc, context)


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """Django's 404 for a path no URL pattern matches (handler404): JSON under /api/, as the API documents it.

    An id the routes refuse (`/api/v1/orders/0.5/cancel/`, `/api/v1/clients/x/valuation/`) never reaches DRF, whose
    own 404s are JSON; without this a client would get Django's HTML page, which the schema does not describe.
    """
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception)  # type: ignore[arg-type]
