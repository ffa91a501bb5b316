"""A database outage answers 503 with a clear body and Retry-After, never a 500 with a trace: through DRF's
exception handler (an API view), and through the 500 handler (a middleware or a non-API view)."""

from typing import Any

import pytest
from django.db import InterfaceError, OperationalError
from django.test import Client

from clients.api import ClientViewSet
from portfolio_site.api.exceptions import exception_handler
from portfolio_site.outages import DATABASE_UNAVAILABLE, RETRY_AFTER_SECONDS
from portfolio_site.tests.test_errors import assert_clean_body

OUTAGES = [
    OperationalError('connection to server at "127.0.0.1", port 5432 failed: Connection refused'),
    InterfaceError("connection already closed"),
]


@pytest.mark.parametrize("error", OUTAGES, ids=["operational", "interface"])
def test_the_api_exception_handler_maps_a_database_outage_to_503_with_retry_after(error: Exception) -> None:
    response = exception_handler(error, {})
    assert response is not None
    assert response.status_code == 503
    assert response.data == {"detail": DATABASE_UNAVAILABLE}
    assert response["Retry-After"] == str(RETRY_AFTER_SECONDS)


@pytest.mark.django_db
def test_an_api_read_during_a_database_outage_answers_503_json_without_a_trace(
    api: Any, operations: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise OUTAGES[0]

    monkeypatch.setattr(ClientViewSet, "list", unreachable)
    response = api(operations).get("/api/v1/clients/")
    assert response.status_code == 503
    assert response.json() == {"detail": DATABASE_UNAVAILABLE}
    assert response["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert_clean_body(response)
    assert "5432" not in response.content.decode()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("path", "content_type"), [("/api/v1/clients/", "application/json"), ("/admin/", "text/html")], ids=["api", "admin"]
)
def test_a_database_outage_in_a_middleware_answers_503_not_500(
    path: str, content_type: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Raised before any view (the session middleware reads the database): Django's 500 handler answers it."""
    from django.contrib.sessions.middleware import SessionMiddleware

    def unreachable(self: Any, request: Any) -> None:
        raise OUTAGES[1]

    monkeypatch.setattr(SessionMiddleware, "process_request", unreachable)
    response = Client(raise_request_exception=False).get(path)
    assert response.status_code == 503
    assert response["Content-Type"].startswith(content_type)
    assert response["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert DATABASE_UNAVAILABLE in response.content.decode()
    assert_clean_body(response)


@pytest.mark.django_db
def test_any_other_error_still_answers_django_s_500(monkeypatch: pytest.MonkeyPatch) -> None:
    from django.contrib.sessions.middleware import SessionMiddleware

    def broken(self: Any, request: Any) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(SessionMiddleware, "process_request", broken)
    response = Client(raise_request_exception=False).get("/admin/")
    assert response.status_code == 500
    assert "Retry-After" not in response
