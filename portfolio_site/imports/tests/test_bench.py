"""The import benchmark keeps working (its figures are in docs/benchmarks.md, measured at full size)."""

import pytest

from portfolio_site.testing import run_bench


@pytest.mark.postgres
def test_the_import_benchmark_runs_and_prints_its_ratio_and_memory() -> None:
    result = run_bench("import_bench.py", "transactions", "--rows", "3000", "--clients", "40")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("ratio: 0.") or line.startswith("ratio: 1.") for line in lines), result.stdout
    assert any(line.startswith("peak RSS:") for line in lines)
    assert "created 3000" in result.stdout


@pytest.mark.postgres
def test_the_allocations_benchmark_compares_with_transactions_and_prints_its_ratio_and_memory() -> None:
    result = run_bench(
        "import_bench.py", "allocations", "--kind", "allocations", "--rows", "3000", "--clients", "40", "--assets", "30"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith(("ratio: 0.", "ratio: 1.")) for line in lines), result.stdout
    assert any(line.startswith("peak RSS:") for line in lines)
    # Every trade recorded (none refused: the generated file keeps every portfolio in cash and units).
    assert "allocations from allocations.csv: succeeded; read 3000, created 3000" in result.stdout
