"""`shardzoo plan` stays near the measured peak of real CPU runs (benchmarks/plan_vs_measured.py), so
the planner cannot rot as the models and the trainer change. In `nox -s slow` (a run each)."""

from __future__ import annotations

from pathlib import Path

import pytest
from shardzoo.testing.scripts import load_script

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "plan_vs_measured.py"


@pytest.mark.slow
@pytest.mark.parametrize("case", ["qwen3-recompute", "qwen3-no-recompute", "qwen3-tp2"])
def test_plan_is_within_a_quarter_of_the_measured_peak(case):
    bench = load_script(BENCH)
    results = bench.run([case])
    result = results[case]
    # Measured +1 to +3% (plan above) on these cases; the benchmark's goal is 10%. 25% leaves room for
    # the allocator and the machine while a missing term (a block's internals, the gradients being
    # reduced: 10-20% each here) still fails it.
    assert 0.75 < result["plan_over_measured"] < 1.25, result
    if case in bench.RESUMED:
        # The load's peak: measured -3% (plan below); the export's figure is a bound (measured 37 MiB vs 47).
        assert 0.75 < results[f"{case}:resume"]["plan_over_measured"] < 1.25, results
        assert results[f"{case}:export"]["plan_over_measured"] >= 1, results
