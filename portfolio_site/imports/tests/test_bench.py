"""The import benchmark keeps working (its figures are in docs/benchmarks.md, measured at full size)."""

import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest
from django.conf import settings

ROOT = Path(settings.BASE_DIR)


@pytest.mark.postgres
def test_the_import_benchmark_runs_and_prints_its_ratio_and_memory() -> None:
    database = settings.DATABASES["default"]
    server = f"postgres://{database['USER']}@{database['HOST']}:{database['PORT'] or 5432}"
    url = f"{server}/portfolio_bench_ci"
    # A scratch database of this test's own, started afresh: one left by an older checkout may hold a
    # migration history this one does not know.
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS portfolio_bench_ci WITH (FORCE)")
    result = subprocess.run(
        [sys.executable, "bench/import_bench.py", "--rows", "3000", "--clients", "40", "--database-url", url],
        cwd=ROOT,
        env={**os.environ, "REDIS_URL": ""},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("ratio: 0.") or line.startswith("ratio: 1.") for line in lines), result.stdout
    assert any(line.startswith("peak RSS:") for line in lines)
    assert "created 3000" in result.stdout


@pytest.mark.postgres
def test_the_allocations_benchmark_compares_with_transactions_and_prints_its_ratio_and_memory() -> None:
    database = settings.DATABASES["default"]
    server = f"postgres://{database['USER']}@{database['HOST']}:{database['PORT'] or 5432}"
    # A scratch database named after the test database, so that suites run side by side never share one.
    scratch = f"portfolio_bench_{database['NAME'].removeprefix('test_').removeprefix('portfolio_')}_allocations"
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
    result = subprocess.run(
        [
            sys.executable,
            "bench/import_bench.py",
            "--kind",
            "allocations",
            "--rows",
            "3000",
            "--clients",
            "40",
            "--assets",
            "30",
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
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith(("ratio: 0.", "ratio: 1.")) for line in lines), result.stdout
    assert any(line.startswith("peak RSS:") for line in lines)
    # Every trade recorded (none refused: the generated file keeps every portfolio in cash and units).
    assert "allocations from allocations.csv: succeeded; read 3000, created 3000" in result.stdout
