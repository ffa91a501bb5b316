"""Several processes (issue 21): two gunicorn processes on loopback sharing PostgreSQL and a Redis (a private
redis-server: cache and job broker), and a Celery worker. A session revoked through one is refused by the other
at once; a write through one is read through the other, cached reads included; a job enqueued by one runs once.
Budget: ~15 s (three process starts)."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from accounts.tests.factories import SuperuserFactory
from clients.tests.factories import ClientFactory, main_portfolio
from portfolio_site.tests.servers import (
    ROOT,
    Gunicorn,
    RedisServer,
    access_token,
    database_url_of_the_tests,
    stop_process,
    wait_until,
)

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not RedisServer.available(), reason="needs redis-server on PATH (apt: redis-server)"),
]


@pytest.fixture
def shared_env(transactional_db: None) -> Iterator[dict[str, str]]:
    """What every process of the deployment shares: the (committed) test database, a Redis, jobs on its queue."""
    with RedisServer() as redis:
        yield {
            "DATABASE_URL": database_url_of_the_tests(),
            "REDIS_URL": f"{redis.url}/0",
            "CELERY_BROKER_URL": f"{redis.url}/1",
            "CELERY_TASK_ALWAYS_EAGER": "false",
            "DJANGO_SETTINGS_MODULE": "portfolio_site.settings.test",
        }


@pytest.fixture
def worker(shared_env: dict[str, str]) -> Iterator[None]:
    command = [
        sys.executable, "-m", "celery", "-A", "portfolio_site", "worker", "--pool", "solo", "--without-gossip",
        "--without-mingle", "--loglevel", "INFO",
    ]  # fmt: skip
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, **shared_env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield
    finally:
        output = stop_process(process, timeout=30)
        if os.environ.get("SHOW_WORKER_LOG"):
            print(output)  # noqa: T201


def test_two_gunicorn_processes_and_a_worker_share_sessions_writes_and_jobs(
    shared_env: dict[str, str], worker: None
) -> None:
    from accounts.models import LoginSession
    from portfolio_site.jobs.models import JobRun

    user = SuperuserFactory()
    customer = ClientFactory(name="Ann", base_currency="EUR")
    portfolio = main_portfolio(customer)
    token, other_token = access_token(user), access_token(user)
    other_session = LoginSession.objects.order_by("created_at").last()
    assert other_session is not None

    with Gunicorn(shared_env, threads=2) as one, Gunicorn(shared_env, threads=2) as two:
        detail, valuation = f"/api/v1/clients/{customer.pk}/", f"/api/v1/clients/{customer.pk}/valuation/"
        # Both processes have read (and cached) the client, the list, the valuation and both sessions' state.
        for server in (one, two):
            assert server.get(detail, token=token).json()["name"] == "Ann"
            assert server.get("/api/v1/clients/", token=token).json()["results"][0]["name"] == "Ann"
            assert server.get(valuation, token=token).status_code == 200
            assert server.get(detail, token=other_token).status_code == 200
        valued_before = two.get(valuation, token=token).json()

        # A session revoked through one is refused by two at once.
        revoked = one.post(f"/api/v1/auth/sessions/{other_session.pk}/revoke/", token=token)
        assert revoked.status_code in (200, 204), revoked.content
        assert two.get(detail, token=other_token).status_code == 401
        assert one.get(detail, token=other_token).status_code == 401

        # A write through one is what two reads, cached reads included.
        assert one.request("PATCH", detail, token=token, json={"name": "Ann Smith"}).status_code == 200
        assert two.get(detail, token=token).json()["name"] == "Ann Smith"
        assert two.get("/api/v1/clients/", token=token).json()["results"][0]["name"] == "Ann Smith"
        deposit = {"portfolio": portfolio.pk, "kind": "deposit", "amount": "250", "currency": "EUR"}
        assert one.post("/api/v1/transactions/", token=token, json={**deposit, "date": "2026-07-01"}).ok
        valued_after = two.get(valuation, token=token).json()
        assert valued_after != valued_before, valued_after
        assert Decimal("250") in _decimals(valued_after)

        # A job enqueued by one runs once, in the worker.
        asked = one.post("/api/v1/auth/password-reset/", json={"email": "nobody@example.net"})
        assert asked.status_code == 202, asked.content
        task = "accounts.password_reset_request"
        wait_until(lambda: JobRun.objects.filter(task=task, outcome=JobRun.Outcome.SUCCEEDED).exists(), timeout=30)
        time.sleep(1)  # time enough for a second run, had the job been delivered twice
        assert JobRun.objects.filter(task=task).count() == 1


def _decimals(value: Any) -> set[Decimal]:
    """Every number in a JSON document (amounts are strings)."""
    if isinstance(value, dict):
        return set().union(*(_decimals(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_decimals(v) for v in value)) if value else set()
    try:
        return {Decimal(str(value))}
    except ArithmeticError:
        return set()
