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


# --- PostgreSQL cut off for real: gunicorn reaching it through a loopback proxy the test cuts --------------------


@pytest.mark.postgres
def test_with_the_database_unreachable_ready_and_the_api_answer_503_then_recover_by_themselves(
    transactional_db: None,
) -> None:
    """Budget: ~5 s (a gunicorn start). The server has no Redis (local-memory cache, jobs in-process), so the
    database is the one thing that goes away."""
    from accounts.tests.factories import SuperuserFactory
    from clients.tests.factories import ClientFactory
    from portfolio_site.tests.servers import (
        Gunicorn,
        TcpProxy,
        access_token,
        database_address_of_the_tests,
        database_url_of_the_tests,
        wait_until,
    )

    ClientFactory(name="Ann")
    token = access_token(SuperuserFactory())
    with TcpProxy(database_address_of_the_tests()) as proxy:
        env = {
            "DATABASE_URL": database_url_of_the_tests(host="127.0.0.1", port=proxy.port),
            "REDIS_URL": "",
            "CELERY_BROKER_URL": "",
        }
        with Gunicorn(env) as server:
            assert server.get("/health/ready").json()["status"] == "ok"
            assert server.get("/api/v1/clients/", token=token).json()["count"] == 1

            proxy.cut()
            ready = server.get("/health/ready")
            assert ready.status_code == 503
            assert ready.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
            assert ready.json()["status"] == "down"
            assert ready.json()["components"]["database"] == "down"
            calls = [("GET", "/api/v1/clients/"), ("POST", "/api/v1/clients/"), ("GET", "/api/v1/auth/me/")]
            for method, path in calls:
                response = server.request(method, path, token=token, json={"name": "Bob"})
                assert response.status_code == 503, (method, path, response.content)
                assert response.json() == {"detail": DATABASE_UNAVAILABLE}
                assert response.headers["Retry-After"] == str(RETRY_AFTER_SECONDS)
                assert_clean_body(response)
            # The admin with a session cookie: the session middleware's read fails before any view.
            admin = server.get("/admin/", cookies={"sessionid": "x" * 32})
            assert admin.status_code == 503, admin.content
            assert admin.headers["Content-Type"].startswith("text/html")
            assert DATABASE_UNAVAILABLE in admin.text
            assert "Traceback" not in admin.text

            proxy.restore()  # nothing restarts: the next requests connect again
            assert wait_until(lambda: server.get("/health/ready").status_code == 200, timeout=10)
            assert server.get("/api/v1/clients/", token=token).json()["count"] == 1
