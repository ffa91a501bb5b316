"""A real worker process, on the real Redis, takes a job and runs it (CI sets REDIS_URL; skipped without it)."""

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.db import connection

from holdings.tests.market_server import MarketServer
from portfolio_site.celery import app
from portfolio_site.jobs.heartbeat import heartbeat_age

pytestmark = pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="needs Redis: set REDIS_URL")

ROOT = Path(__file__).resolve().parents[3]


def _database_url() -> str:
    """The test database, for the worker to write its JobRuns where this test reads them (PostgreSQL: SQLite's test
    database lives in this process's memory)."""
    db = connection.settings_dict
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    return f"postgres://{db['USER']}{password}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def worker(transactional_db: None) -> Iterator[str]:
    """`celery -A portfolio_site worker` as the README starts it, on a queue of its own (other test runs may share
    the broker), with the test settings; yields the queue name."""
    queue = f"test-{uuid.uuid4().hex}"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "portfolio_site.settings.test"}
    market = MarketServer().__enter__()  # the ECB as the market data job reads it, on loopback
    env["MARKET_DATA_ECB_URL"] = market.url("/files/ecb-daily.xml")
    if connection.vendor == "postgresql":
        env["DATABASE_URL"] = _database_url()
    else:
        env["DATABASE_URL"] = f"sqlite:///{ROOT / f'.worker-{queue}.sqlite3'}"  # never the developer's database
    command = [
        sys.executable, "-m", "celery", "-A", "portfolio_site", "worker", "--queues", queue, "--pool", "solo",
        "--hostname", f"{queue}@%h", "--without-gossip", "--without-mingle", "--loglevel", "INFO",
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    app.conf.task_always_eager = False
    try:
        yield queue
    finally:
        app.conf.task_always_eager = True
        market.__exit__()
        process.terminate()
        output, _ = process.communicate(timeout=30)
        Path(ROOT / f".worker-{queue}.sqlite3").unlink(missing_ok=True)
        if os.environ.get("SHOW_WORKER_LOG"):
            print(output.decode(errors="replace"))  # noqa: T201


def test_a_worker_process_started_as_the_readme_says_runs_a_job_sent_through_redis(worker: str) -> None:
    from portfolio_site.jobs.tasks import heartbeat

    assert heartbeat_age() is None
    result = heartbeat.apply_async(queue=worker)
    beat: Any = result.get(timeout=60)
    assert beat["worker"].split(":")[-1] != str(os.getpid())  # another process ran it
    age = heartbeat_age()  # ... and wrote to the shared cache, where the readiness probe reads it
    assert age is not None
    assert age.total_seconds() < 60
    assert settings.CELERY_BROKER_URL.startswith("redis://")


@pytest.mark.postgres
def test_a_job_enqueued_after_a_commit_runs_in_the_worker_and_leaves_its_job_run(worker: str) -> None:
    from accounts.tasks import purge_ended_security_records
    from portfolio_site.jobs.base import HEADER_REQUEST_ID
    from portfolio_site.jobs.models import JobRun

    request_id = uuid.uuid4().hex
    purge_ended_security_records.apply_async(queue=worker, headers={HEADER_REQUEST_ID: request_id}).get(timeout=60)
    deadline = time.monotonic() + 10
    while not JobRun.objects.filter(outcome=JobRun.Outcome.SUCCEEDED).exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    run = JobRun.objects.get()
    assert run.task == "accounts.purge_ended_security_records"
    assert run.outcome == JobRun.Outcome.SUCCEEDED
    assert run.worker.startswith(worker)
    assert run.request_id == request_id  # the request id travelled with the job


@pytest.mark.postgres
def test_every_job_runs_in_a_real_worker(worker: str) -> None:
    """Each job of the README's table, sent through Redis to the worker process, ends succeeded (the request jobs,
    accounts.login_code_request and password_reset_request, enqueue send_email on the default queue, which this
    test's worker does not read: send_email is sent here directly)."""
    from accounts.tasks import send_email
    from accounts.tests.factories import UserFactory
    from holdings.models import FxRate
    from holdings.tasks import daily_values_refresh, refresh_market_data
    from portfolio_site.idempotency.tasks import purge_expired_keys
    from portfolio_site.imports.models import ImportUpload
    from portfolio_site.imports.tasks import run_upload
    from portfolio_site.jobs.models import JobRun
    from portfolio_site.jobs.tasks import purge_job_runs

    user = UserFactory(is_superuser=True)
    content = f"email,name,advisor,base_currency\nann@example.net,Ann,{user.email},EUR\n".encode()
    upload = ImportUpload.objects.create(
        user=user, kind="clients", file_name="c.csv", sha256="x", size=len(content), rows=1, content=content
    )
    sent = [
        send_email.apply_async(
            kwargs={"user_id": user.pk, "template": "login_code", "context": {"code": "123456", "minutes": 5}},
            queue=worker,
        ),
        daily_values_refresh.apply_async(kwargs={}, queue=worker),
        run_upload.apply_async(kwargs={"upload_id": str(upload.pk), "dry_run": True}, queue=worker),
        purge_job_runs.apply_async(queue=worker),
        refresh_market_data.apply_async(kwargs={"source": "ecb"}, queue=worker),
        purge_expired_keys.apply_async(queue=worker),
    ]
    for result in sent:
        result.get(timeout=60)
    deadline = time.monotonic() + 10
    while JobRun.objects.filter(outcome=JobRun.Outcome.SUCCEEDED).count() < len(sent) and time.monotonic() < deadline:
        time.sleep(0.2)
    runs = dict(JobRun.objects.values_list("task", "outcome"))
    assert runs == {
        "accounts.send_email": "succeeded",
        "holdings.daily_values_refresh": "succeeded",
        "imports.run_upload": "succeeded",
        "jobs.purge_job_runs": "succeeded",
        "holdings.refresh_market_data": "succeeded",
        "idempotency.purge_expired_keys": "succeeded",
    }
    assert FxRate.objects.filter(base="EUR").exists()  # the worker stored the ECB's rates
    upload.refresh_from_db()
    assert upload.dry_run_batch is not None
    assert upload.dry_run_batch.outcome == "dry_run"
