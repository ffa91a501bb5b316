"""The valuation benchmark keeps working (its figures are in docs/benchmarks.md, measured at full size)."""

import pytest

from portfolio_site.testing import run_bench


@pytest.mark.postgres
def test_the_valuation_benchmark_runs_checks_its_floors_and_prints_its_ratios() -> None:
    result = run_bench("valuation_bench.py", "valuation", "--allocations", "200", "--assets", "10", "--years", "1")
    # The bench asserts that each floor computes the figures ours do before it prints a ratio.
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "200 allocations over 10 assets" in result.stdout
    assert sum("ratio uncached/floor" in line and "uncached/cached" in line for line in lines) == 2, result.stdout
    assert any(line.startswith("daily table rebuilt after a back-dated trade") for line in lines), result.stdout
    assert any(line.startswith("first valuation after it") for line in lines), result.stdout
