"""Liveness touches nothing; readiness needs the database (503 without it) and reports a lost cache as degraded."""

from typing import Any

import pytest
from django.db import DEFAULT_DB_ALIAS, OperationalError, connections

REDIS_UNREACHABLE = "redis://127.0.0.1:1/0"


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
    assert response.json() == {"status": "ok", "components": {"database": "ok", "cache": "ok"}}
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_ready_answers_503_with_the_database_down(client: Any, database_down: None) -> None:
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json() == {"status": "down", "components": {"database": "down", "cache": "ok"}}
    assert b"Connection refused" not in response.content


@pytest.mark.django_db
@pytest.mark.parametrize("ignore_exceptions", [True, False], ids=["ignored", "raised"])
def test_ready_answers_200_degraded_when_redis_is_unreachable(
    client: Any, settings: Any, ignore_exceptions: bool
) -> None:
    settings.CACHES = redis_cache_settings(ignore_exceptions=ignore_exceptions)
    response = client.get("/health/ready")
    assert response.status_code == 200
    assert response.json() == {"status": "degraded", "components": {"database": "ok", "cache": "down"}}


@pytest.mark.django_db
def test_ready_answers_503_when_both_database_and_cache_are_down(
    client: Any, settings: Any, database_down: None
) -> None:
    settings.CACHES = redis_cache_settings(ignore_exceptions=True)
    response = client.get("/health/ready")
    assert response.status_code == 503
    assert response.json() == {"status": "down", "components": {"database": "down", "cache": "down"}}


@pytest.mark.parametrize("url", ["/health/live", "/health/ready"])
def test_probes_accept_only_get(client: Any, url: str) -> None:
    assert client.post(url).status_code == 405
