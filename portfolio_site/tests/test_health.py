"""Liveness touches nothing; readiness needs the database (503 without it) and reports a lost cache as degraded."""

from typing import Any

import pytest
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections

REDIS_UNREACHABLE = "redis://127.0.0.1:1/0"
IN_PROCESS = {"broker": "none (jobs run in-process)"}


@pytest.fixture(autouse=True)
def _no_broker(settings: Any) -> None:
    """As on a bare machine (jobs run in-process), unless a test sets a broker; CI sets REDIS_URL, hence one."""
    settings.CELERY_BROKER_URL = ""


def redis_cache_settings(*, ignore_exceptions: bool) -> dict[str, Any]:
    return {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_UNREACHABLE,
            "OPTIONS": {
                "CLIENT_CLASS": "django_redis.client.DefaultClient",
                "IGNORE_EXCEPTIONS": ignore_exceptions,
                "SOCKET_CONNECT_TIMEOUT": 0.2,
                "SOCKET_TIMEOUT": 0.2,
            },
        }
    }


@pytest.fixture
def database_down(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every new cursor fails as it does when the database server is gone."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("could not connect to server: Connection refused")

    monkeypatch.setattr(type(connections[DEFAULT_DB_ALIAS]), "cursor", refuse)


@pytest.mark.django_db
def test_live_answers_200_without_a_single_database_query(client: Any, count_queries: Any) -> None:
    responses = []
    assert count_queries(lambda: responses.append(client.get("/health/live"))) == 0
    assert responses[0].status_code == 200
    assert responses[0].json() == {"status": "ok"}
    assert "no-cache" in responses[0]["Cache-Control"]


def test_live_answers_200_with_database_access_forbidden(client: Any) -> None:
    """No `db` fixture: pytest-django would fail the test on any attempt to use the database."""
    assert client.get("/health/live").status_code == 200


def test_live_answers_200_while_the_database_is_down(client: Any, database_down: None) -> None:
    assert client.get("/health/live").status_code == 200


@pytest.mark.django_db
def test_ready_answers_200_ok_when_database_and_cache_are_up(client: Any) -> None:
    response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "components": {"database": "ok", "cache": "ok", "jobs": IN_PROCESS}}
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_ready_answers_503_with_the_database_down(client: Any, database_down: None) -> None:
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert response.json() == {"status": "down", "components": {"database": "down", "cache": "ok", "jobs": IN_PROCESS}}
    assert b"Connection refused" not in response.content


@pytest.mark.django_db
@pytest.mark.parametrize("ignore_exceptions", [True, False], ids=["ignored", "raised"])
def test_ready_answers_200_degraded_when_redis_is_unreachable(
    client: Any, settings: Any, ignore_exceptions: bool
) -> None:
    settings.CACHES = redis_cache_settings(ignore_exceptions=ignore_exceptions)
    response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {
        "status": "degraded",
        "components": {"database": "ok", "cache": "down", "jobs": IN_PROCESS},
    }


@pytest.mark.django_db
def test_ready_answers_503_when_both_database_and_cache_are_down(
    client: Any, settings: Any, database_down: None
) -> None:
    settings.CACHES = redis_cache_settings(ignore_exceptions=True)
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json() == {
        "status": "down",
        "components": {"database": "down", "cache": "down", "jobs": IN_PROCESS},
    }


@pytest.mark.parametrize("url", ["/health/live", "/health/ready"])
def test_probes_accept_only_get(client: Any, url: str) -> None:
    assert client.post(url).status_code == 405


@pytest.fixture
def broker(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A configured broker whose reachability the test decides."""
    from portfolio_site import health

    settings.CELERY_BROKER_URL = "redis://broker.invalid:6379/1"
    state = {"up": True}
    monkeypatch.setattr(health, "_broker_ok", lambda: state["up"])
    return state


@pytest.mark.django_db
def test_ready_reports_the_age_of_a_fresh_worker_heartbeat_as_ok(client: Any, broker: Any) -> None:
    from portfolio_site.jobs.tasks import heartbeat

    heartbeat.apply()
    response = client.get("/health/ready")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["components"]["jobs"] == {
        "broker": "ok",
        "workers": {"status": "ok", "last_heartbeat_seconds_ago": 0},
    }


@pytest.mark.django_db
def test_ready_is_degraded_but_200_without_any_worker_heartbeat(client: Any, broker: Any) -> None:
    response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["components"]["jobs"]["workers"] == {"status": "none", "last_heartbeat_seconds_ago": None}


@pytest.mark.django_db
def test_ready_calls_a_heartbeat_older_than_the_limit_stale(client: Any, broker: Any, settings: Any) -> None:
    import time_machine

    from portfolio_site.jobs.tasks import heartbeat

    settings.JOBS_HEARTBEAT_MAX_AGE_SECONDS = 60
    with time_machine.travel("2026-01-01 00:00:00Z"):
        heartbeat.apply()
    with time_machine.travel("2026-01-01 00:05:00Z"):
        body = client.get("/health/ready").json()
    assert body["status"] == "degraded"
    assert body["components"]["jobs"]["workers"] == {"status": "stale", "last_heartbeat_seconds_ago": 300}


@pytest.mark.django_db
def test_ready_reports_an_unreachable_broker_as_down_and_stays_200(
    client: Any, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from portfolio_site.celery import app

    settings.CELERY_BROKER_URL = "redis://127.0.0.1:1/1"
    # Celery reads the environment's CELERY_BROKER_URL before its configuration (CI sets it to the real broker).
    monkeypatch.setenv("CELERY_BROKER_URL", "redis://127.0.0.1:1/1")
    app.conf.broker_url, previous = "redis://127.0.0.1:1/1", app.conf.broker_url
    try:
        response = client.get("/health/ready")
    finally:
        app.conf.broker_url = previous
    assert response.status_code == 200
    assert response.json()["status"] == "degraded"
    assert response.json()["components"]["jobs"]["broker"] == "down"
