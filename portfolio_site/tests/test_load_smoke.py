"""The load driver (bench/load.py) keeps working: its smoke mode (a tiny book, two seconds a phase) against gunicorn
on PostgreSQL and Redis, with no error. Its real figures are in docs/benchmarks.md. Budget: about 60 s, most of it
migrating the scratch database: the test database cannot be its template, because the suite's transactional tests
empty it (the roles' groups and permissions with it) before this test may run."""

import os
import subprocess
import sys

import pytest
from django.conf import settings
from django.db import connections


@pytest.mark.postgres
def test_the_load_driver_serves_reads_and_writes_through_gunicorn_without_errors() -> None:
    if not os.environ.get("REDIS_URL"):
        pytest.skip("needs Redis (production settings): set REDIS_URL")
    database = connections["default"].settings_dict
    server = f"postgres://{database['USER']}@{database['HOST']}:{database['PORT'] or 5432}"
    result = subprocess.run(
        [
            sys.executable,
            "bench/load.py",
            "--smoke",
            "--server",
            server,
            "--redis-url",
            os.environ["REDIS_URL"],
        ],
        cwd=settings.BASE_DIR,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for phase in ("small", "large"):
        assert any(line.startswith(f"{phase}: ") and ", errors 0 " in line for line in lines), result.stdout
    assert any(line.startswith("p99 ratio large / small: ") for line in lines), result.stdout
