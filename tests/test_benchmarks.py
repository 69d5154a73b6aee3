"""Every model's step benchmark runs through the shared harness (tiny preset): both sides start from
the same weights and agree on the first loss, and our step does the reference's work, FLOP for FLOP."""

from pathlib import Path

import pytest
from shardzoo.bench.step import OURS, run_and_write
from shardzoo.testing.scripts import load_script

ROOT = Path(__file__).resolve().parent.parent
BENCHES = sorted(ROOT.glob("models/*/benchmarks/bench_step.py"))


def load(path: Path):
    return load_script(path).BENCHMARK


def test_every_model_has_a_step_benchmark():
    assert {p.parent.parent.name for p in BENCHES} == {p.name for p in (ROOT / "models").iterdir()
                                                       if (p / "pyproject.toml").exists()}


@pytest.mark.parametrize("path", BENCHES, ids=lambda p: p.parent.parent.name)
def test_step_benchmark_tiny(path):
    bench = load(path)
    assert {"cpu", "tiny"} <= set(bench.presets)
    result, files = run_and_write(bench, ["--preset", "tiny", "--steps", "1", "--warmup", "1", "--no-memory",
                                          "--no-write"])
    assert files == []
    # fp32 on both sides from the same weights: the first losses differ only by summation order.
    assert result["first_loss_relative_difference"] < 1e-6
    ours = result["sides"][OURS]["counted_flops_per_step"]
    if bench.model == "gpt_oss":
        # Our SDPA path adds the sink as one more key column (T x (T + 1) scores): a fraction 1/T more
        # attention work, nothing else.
        assert result["model_flops_per_step"] < ours < 1.01 * result["model_flops_per_step"]
    else:
        assert ours == result["model_flops_per_step"]
