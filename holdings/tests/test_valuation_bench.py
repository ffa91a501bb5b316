"""The valuation benchmark keeps working (its figures are in docs/benchmarks.md, measured at full size)."""

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from django.conf import settings

ROOT = Path(settings.BASE_DIR)


@pytest.mark.postgres
def test_the_valuation_benchmark_runs_checks_its_floors_and_prints_its_ratios() -> None:
    database = settings.DATABASES["default"]
    server = f"postgres://{database['USER']}@{database['HOST']}:{database['PORT'] or 5432}"
    # A scratch database of this test's own, named after the test database so suites run side by side never share
    # one, and started afresh: one left by an older checkout may hold a migration history this one does not know.
    scratch = f"portfolio_bench_{database['NAME'].removeprefix('test_').removeprefix('portfolio_')}_valuation"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
    result = subprocess.run(
        [
            sys.executable,
            "bench/valuation_bench.py",
            "--allocations",
            "200",
            "--assets",
            "10",
            "--years",
            "1",
            "--database-url",
            f"{server}/{scratch}",
        ],
        cwd=ROOT,
        env={**os.environ, "REDIS_URL": ""},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    # The bench asserts that each floor computes the figures ours do before it prints a ratio.
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "200 allocations over 10 assets" in result.stdout
    assert sum("ratio uncached/floor" in line and "uncached/cached" in line for line in lines) == 2, result.stdout
    assert any(line.startswith("rebuild after a back-dated trade") for line in lines), result.stdout
