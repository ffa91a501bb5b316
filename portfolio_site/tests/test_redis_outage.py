"""A private Redis (cache, throttles' and sessions' cache, job broker) stopped in the middle of a run of requests
(issue 21): reads and writes keep answering correctly, /health/ready says the cache and the queue are degraded,
a revoked session stays refused and the rate limits still hold. Budget: ~5 s; skipped without redis-server."""

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest
from django.test import override_settings
from rest_framework.test import APIClient, APIRequestFactory
from rest_framework.throttling import SimpleRateThrottle

from accounts.models import LoginSession
from accounts.services.events import ClientInfo
from accounts.services.sessions import session_revoke, session_start
from accounts.tests.factories import SuperuserFactory, UserFactory
from clients.tests.factories import ClientFactory, main_portfolio
from portfolio_site.celery import app as celery_app
from portfolio_site.jobs.heartbeat import heartbeat_record
from portfolio_site.tests.servers import RedisServer

pytestmark = pytest.mark.skipif(not RedisServer.available(), reason="needs redis-server on PATH (apt: redis-server)")

LOGIN = "/api/v1/auth/login/"


@pytest.fixture
def private_redis(monkeypatch: pytest.MonkeyPatch) -> Iterator[RedisServer]:
    """The cache and the job broker on a redis-server of this test's own, configured as production configures
    the cache (settings.base: IGNORE_EXCEPTIONS, short timeouts)."""
    with RedisServer() as redis:
        caches = {
            "default": {
                "BACKEND": "django_redis.cache.RedisCache",
                "LOCATION": f"{redis.url}/0",
                "OPTIONS": {
                    "CLIENT_CLASS": "django_redis.client.DefaultClient",
                    "IGNORE_EXCEPTIONS": True,
                    "SOCKET_CONNECT_TIMEOUT": 0.5,
                    "SOCKET_TIMEOUT": 0.5,
                },
            }
        }
        # Celery reads CELERY_BROKER_URL from the environment before its configuration (CI sets it).
        monkeypatch.setenv("CELERY_BROKER_URL", f"{redis.url}/1")
        monkeypatch.setitem(celery_app.conf, "broker_url", f"{redis.url}/1")
        with override_settings(CACHES=caches, CELERY_BROKER_URL=f"{redis.url}/1", DJANGO_REDIS_IGNORE_EXCEPTIONS=True):
            yield redis


def bearer(user: Any) -> tuple[APIClient, LoginSession]:
    session, pair = session_start(user=user, client=ClientInfo(ip="127.0.0.1", user_agent="pytest"))
    assert pair is not None
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {pair.access}")
    return client, session


@pytest.mark.django_db(transaction=True)
def test_with_redis_stopped_mid_run_requests_answer_ready_is_degraded_and_revocation_and_limits_hold(
    private_redis: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ledger.selectors import cash_available

    monkeypatch.setattr(
        SimpleRateThrottle,
        "THROTTLE_RATES",
        {**SimpleRateThrottle.THROTTLE_RATES, "login_ip": "3/min", "login_account": "100/min"},
    )
    user = SuperuserFactory()
    customer = ClientFactory(name="Ann", base_currency="EUR")
    portfolio = main_portfolio(customer)
    api, _ = bearer(user)
    other_api, other_session = bearer(user)
    heartbeat_record()  # as a worker does, into the private Redis

    # Redis up: everything ok, and the second session's "active" is now cached in Redis.
    ready = APIClient().get("/health/ready").json()
    assert ready["status"] == "ok", ready
    assert api.get("/api/v1/clients/").json()["count"] == 1
    assert api.get(f"/api/v1/clients/{customer.pk}/valuation/").status_code == 200
    assert other_api.get("/api/v1/clients/").status_code == 200

    private_redis.stop()

    ready_response = APIClient().get("/health/ready")
    assert ready_response.status_code == 200  # still in rotation: requests are served
    ready = ready_response.json()
    assert ready["status"] == "degraded"
    assert ready["components"]["database"] == "ok"
    assert ready["components"]["cache"] == "down"
    assert ready["components"]["jobs"]["broker"] == "down"

    # Reads and writes answer, and what was written is read back (nothing served from a stale cache).
    bob = {"name": "Bob", "email": "bob@example.net", "advisor": customer.advisor_id, "base_currency": "EUR"}
    created = api.post("/api/v1/clients/", bob, format="json")
    assert created.status_code == 201, created.content
    assert api.get("/api/v1/clients/").json()["count"] == 2
    deposit = {"portfolio": portfolio.pk, "kind": "deposit", "amount": "250", "currency": "EUR", "date": "2026-07-01"}
    assert api.post("/api/v1/transactions/", deposit, format="json").status_code == 201
    assert cash_available(portfolio_id=portfolio.pk, currency="EUR") == Decimal("250")
    balances = api.get(f"/api/v1/portfolios/{portfolio.pk}/balances/").json()["balances"]
    assert [(b["currency"], Decimal(b["amount"])) for b in balances] == [("EUR", Decimal("250"))], balances
    assert api.get(f"/api/v1/clients/{customer.pk}/valuation/").status_code == 200

    # A session revoked now is refused at once, though Redis (where it was cached as active) cannot be told.
    session_revoke(session=other_session, client=ClientInfo(ip="127.0.0.1", user_agent="pytest"))
    refused = other_api.get("/api/v1/clients/")
    assert refused.status_code == 401, refused.content
    assert api.get("/api/v1/clients/").status_code == 200

    # The login limit still counts (3 a minute per IP here): the 4th attempt is refused.
    UserFactory(email="anna@example.com")
    attempts = [
        APIClient().post(LOGIN, {"email": "anna@example.com", "password": "wrong"}, REMOTE_ADDR="198.51.100.4")
        for _ in range(4)
    ]
    assert [a.status_code == 429 for a in attempts] == [False, False, False, True]


@pytest.mark.django_db
def test_with_redis_stopped_the_describe_limit_still_holds(private_redis: RedisServer, settings: Any) -> None:
    """Asking for an image's description costs a call to a paid describer: its per-user limit must not lift when
    the cache goes away."""
    from holdings.images.api import DESCRIBE_THROTTLE_SCOPE, DescribeThrottle

    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "asset_describe": "3/min"},
    }
    private_redis.stop()
    user = UserFactory()

    class View:
        throttle_scope = DESCRIBE_THROTTLE_SCOPE

    throttles: list[DescribeThrottle] = []

    def allowed() -> bool:
        request = APIRequestFactory().post("/")
        request.user = user
        throttles.append(DescribeThrottle())
        return throttles[-1].allow_request(request, View())

    assert [allowed() for _ in range(4)] == [True, True, True, False]
    assert 0 < (throttles[-1].wait() or 0) <= 61  # Retry-After: the minute's window
