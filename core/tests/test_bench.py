"""The benchmark harness: FLOP counting (including what torch's counter misses), the step harness end
to end on a toy case (result fields, files, memory subprocesses, goals), the op benchmarks."""

import json
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from shardzoo.bench import ops as ops_bench
from shardzoo.bench.flops import EXTRA_FORMULAS, count_flops
from shardzoo.bench.step import Goal
from shardzoo.ops import OPS
from shardzoo.ops.attention import attention_reference
from shardzoo.ops.grouped_mm import grouped_mm_reference, grouped_mm_torch
from shardzoo.ops.linear_cross_entropy import linear_cross_entropy_chunked, linear_cross_entropy_reference


def test_linear_flops_are_the_textbook_count():
    """y = x W^T with W trained and x not: forward 2MKN, weight gradient 2MKN, no input gradient."""
    m, k, n = 8, 16, 24
    x, w = torch.randn(m, k), torch.randn(n, k, requires_grad=True)
    assert count_flops(lambda: F.linear(x, w).sum().backward()) == 4 * m * k * n


def test_cpu_sdpa_is_counted_like_explicit_attention():
    """torch's counter does not know the CPU flash kernel; ours counts it as the explicit q k^T and p v
    matmuls of the reference (forward), and the backward as torch counts the CUDA kernels' (5 bmm)."""
    q = torch.randn(1, 32, 4, 16, requires_grad=True)
    k, v = torch.randn(1, 32, 2, 16, requires_grad=True), torch.randn(1, 32, 2, 16, requires_grad=True)
    qt, kt, vt = (t.transpose(1, 2) for t in (q, k, v))
    explicit_forward = count_flops(lambda: attention_reference(q, k, v, causal=True))
    assert explicit_forward == 2 * (2 * 4 * 32 * 32 * 16)
    sdpa = lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=True, enable_gqa=True)  # noqa: E731
    assert count_flops(sdpa) == explicit_forward
    assert count_flops(lambda: sdpa().sum().backward()) == explicit_forward * 7 // 2


ATTENTION_KERNELS = ("_scaled_dot_product_flash_attention_for_cpu", "_scaled_dot_product_flash_attention",
                     "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention")


def test_every_attention_kernel_counts_shared_key_value_heads_as_expanded_ones():
    """torch 2.11 rejects grouped-query shapes in its attention formulas (the GPU check's torch 2.11
    crashed on the Qwen3 step). Ours, for every CPU and CUDA kernel, forward and backward, give torch's
    own count of the same attention with the key/value heads repeated to the query's."""
    from torch.utils.flop_counter import sdpa_backward_flop_count, sdpa_flop_count

    q, k, v, grad_out = (2, 8, 32, 16), (2, 2, 48, 16), (2, 2, 48, 24), (2, 8, 32, 24)
    k_repeated, v_repeated = (2, 8, 48, 16), (2, 8, 48, 24)
    for name in ATTENTION_KERNELS:
        forward, backward = getattr(torch.ops.aten, name), getattr(torch.ops.aten, f"{name}_backward")
        assert EXTRA_FORMULAS[forward](q, k, v) == sdpa_flop_count(q, k_repeated, v_repeated), name
        assert EXTRA_FORMULAS[backward](grad_out, q, k, v) == \
            sdpa_backward_flop_count(grad_out, q, k_repeated, v_repeated), name
    with pytest.raises(ValueError, match="3 key/value heads"):
        EXTRA_FORMULAS[torch.ops.aten._scaled_dot_product_flash_attention](q, (2, 3, 48, 16), (2, 3, 48, 24))


def test_grouped_mm_and_inplace_addmm_are_counted():
    """One torch._grouped_mm kernel counts as the per-group loop of matmuls, forward and backward; the
    chunked cross-entropy (addmm_ for the weight gradient) as the full-logits reference."""
    torch.manual_seed(0)
    x, w = torch.randn(40, 16, requires_grad=True), torch.randn(3, 16, 24, requires_grad=True)
    counts, probe = torch.tensor([10, 25, 5]), torch.randn(40, 24)
    loop = count_flops(lambda: (grouped_mm_reference(x, w, counts) * probe).sum().backward())
    assert loop == 3 * 2 * 40 * 16 * 24
    assert count_flops(lambda: (grouped_mm_torch(x, w, counts) * probe).sum().backward()) == loop

    hidden, weight = torch.randn(20, 16, requires_grad=True), torch.randn(50, 16, requires_grad=True)
    targets = torch.randint(0, 50, (20,))
    full = count_flops(lambda: linear_cross_entropy_reference(hidden, weight, targets).backward())
    assert full == 3 * 2 * 20 * 16 * 50
    assert count_flops(lambda: linear_cross_entropy_chunked(hidden, weight, targets, chunk_size=7).backward()) == full


TOY = textwrap.dedent('''
    import torch
    import torch.nn as nn
    from shardzoo.bench.step import Goal, Preset, Side, StepBenchmark, main

    def build(preset, side, dtype):
        width = preset.config["width"]
        model = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        x = torch.randn(preset.batch, preset.seq, width, dtype=dtype)
        return Side(model, lambda: model(x).pow(2).mean())

    BENCHMARK = StepBenchmark(model="toy", reference="itself", presets={"cpu": Preset({"width": 32}, seq=16)},
                              build=build, blocks=("{*}",), describe="the same MLP on both sides",
                              goals=(Goal("step_time", 100.0), Goal("mfu", 2.0)))

    if __name__ == "__main__":
        main(BENCHMARK)
''')


@pytest.fixture
def toy_script(tmp_path):
    path = tmp_path / "bench_toy.py"
    path.write_text(TOY)
    return path


def run_toy(script, *args):
    out = subprocess.run([sys.executable, str(script), "--steps", "2", "--warmup", "1", *args],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_step_harness_end_to_end(toy_script, tmp_path):
    stdout = run_toy(toy_script, "--recompute", "--out-dir", str(tmp_path / "out"))
    [json_file] = (tmp_path / "out").glob("toy_cpu_*.json")
    result = json.loads(json_file.read_text())
    markdown = json_file.with_suffix(".md").read_text()
    assert markdown.strip() in stdout

    env, settings = result["environment"], result["settings"]
    for key in ("hardware", "commit", "torch", "date"):
        assert env[key] and env[key] in markdown
    assert settings["dtype"] == "float32" and settings["seq"] == 16 and settings["batch"] == 1
    assert settings["recompute"] is True and settings["compile"] is False
    # Two Linear layers, weights and biases trained, input not: forward 2 x 2MKN, weight gradients the
    # same again, the input gradient of the second layer only.
    m, width = 16, 32
    assert result["model_flops_per_step"] == 5 * (2 * m * width * 4 * width)
    ours, ref = result["sides"]["ours"], result["sides"]["itself"]
    assert ours["first_step_loss"] == ref["first_step_loss"]  # ours loaded the reference's weights
    assert ours["counted_flops_per_step"] == result["model_flops_per_step"]
    assert result["limit"]["source"] == "measured cpu matmul" and result["limit"]["flops_per_s"] > 0
    for side in (ours, ref):
        assert side["tokens_per_s"] == pytest.approx(16 / side["step_time_s"])
        assert side["mfu"] == pytest.approx(side["model_flops_per_s"] / result["limit"]["flops_per_s"])
        assert side["peak_memory_gib"] > 0  # measured in its own subprocess
    assert result["ratio"]["step_time"] == pytest.approx(ours["step_time_s"] / ref["step_time_s"])
    # Goals are evaluated, not asserted: the loose one is met, the impossible one reported as not met.
    assert [g["met"] for g in result["goals"]] == [True, False]
    assert "NOT met" in markdown
    assert "python " in result["command"] and "--recompute" in result["command"]


def test_goals_apply_only_to_the_preset_as_stated(toy_script, tmp_path):
    run_toy(toy_script, "--seq", "8", "--no-memory", "--out-dir", str(tmp_path))
    [json_file] = tmp_path.glob("toy_cpu_*.json")
    result = json.loads(json_file.read_text())
    assert result["settings"]["seq"] == 8 and result["goals"] == []
    assert result["sides"]["ours"]["peak_memory_gib"] is None and result["ratio"]["peak_memory"] is None


def test_goal_bounds():
    assert Goal("step_time", 0.9).met(0.85) and not Goal("step_time", 0.9).met(0.95)
    assert Goal("mfu", 0.5).met(0.6) and not Goal("mfu", 0.5).met(0.4)


def test_every_op_has_an_example_that_every_backend_runs():
    """The op benchmark covers every registered op; each backend that can run here runs its example
    and agrees with the reference (the parity tests hold the tolerances; this guards the examples)."""
    missing = [name for name, op in OPS.items() if op.example is None]
    assert not missing, f"ops without Op.set_example: {missing}"
    rows = [row for op in OPS.values() for row in ops_bench.bench_op(op, "cpu", torch.float32, 16, 1)]
    assert {row["op"] for row in rows} == set(OPS)
    assert not [row for row in rows if row["status"] == "failed"]
    timed = [row for row in rows if row["status"] == "timed"]
    assert {row["op"] for row in timed} >= {"attention", "rms_norm", "rotary", "grouped_mm", "linear_cross_entropy"}
    for row in timed:
        assert row["max_abs_diff"] < 1e-3, row  # fp32, values of order 1-100
        assert row["backend_ms"] > 0 and row["reference_ms"] > 0
    assert all(row["note"] for row in rows if row["status"] == "unavailable")
