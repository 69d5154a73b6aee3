"""parallel.ignored_modules (MindSpeed-MM ignores an encoder this way): an ignored module is not sharded,
computes under the run's precision (bf16 inputs, its own fp32 weights, bf16 outputs), and when trainable
its gradients are summed over the ranks, so 2 ranks train as 1 process."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from shardzoo.testing import run_training

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "core/tests/configs/tiny_lm.yaml"
COMMON = ["--training.max_steps", "4", "--training.logging_steps", "1", "--data.max_samples", "64",
          "--parallel.ignored_modules", "['model.norm', 'model.layers.1.mlp']"]
# As core/tests/test_distributed.py: the same samples and summed gradients; the runs differ only in
# the fp32 summation order over ranks (measured there: loss 1.5e-7 relative).
RTOL = 1e-5


def test_trainable_ignored_modules_two_ranks_equal_one_process(tmp_path):
    one = run_training(CONFIG, tmp_path / "one", nproc=1, cwd=REPO,
                       overrides=COMMON + ["--training.per_device_train_batch_size", "8"])
    two = run_training(CONFIG, tmp_path / "two", nproc=2, cwd=REPO,
                       overrides=COMMON + ["--training.per_device_train_batch_size", "4"])
    assert [r["loss"] for r in two] == pytest.approx([r["loss"] for r in one], rel=RTOL)
    assert [r["grad_norm"] for r in two] == pytest.approx([r["grad_norm"] for r in one], rel=10 * RTOL)


def test_ignored_modules_train_under_bf16(tmp_path):
    records = run_training(CONFIG, tmp_path, nproc=2, cwd=REPO,
                           overrides=COMMON + ["--training.per_device_train_batch_size", "4",
                                               "--parallel.param_dtype", "bf16"])
    losses = [r["loss"] for r in records]
    assert len(losses) == 4 and all(math.isfinite(x) for x in losses) and losses[-1] < losses[0]


def test_offload_puts_what_fsdp_does_not_manage_on_the_compute_device():
    """With parallel.offload_to_cpu on an accelerator the model is materialized on the host, where FSDP keeps
    its shards (moving each unit to the device for compute); ignored modules, fp32-kept tables and buffers
    compute as they are, so build_model moves them to the device. The meta device stands in for the
    accelerator here; the GPU check trains with offload and an ignored module for real."""
    import torch
    import torch.distributed as dist
    import torch.nn as nn
    from shardzoo.parallel.materialize import move_unsharded
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard
    from torch.testing._internal.distributed.fake_pg import FakeStore

    dist.init_process_group("fake", store=FakeStore(), rank=0, world_size=2)
    try:
        model = nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))
        model.register_buffer("table", torch.ones(3))
        fully_shard(model[0], mesh=init_device_mesh("cpu", (2,)))
        norm_weight = model[1].weight
        assert sorted(move_unsharded(model, torch.device("meta"))) == ["1.bias", "1.weight", "table"]
        assert model[0].weight.device.type == "cpu"  # FSDP's shard stays on the host
        assert model[1].weight.device.type == "meta" and model.table.device.type == "meta"
        assert model[1].weight is norm_weight  # the same Parameter (ties and references hold)
    finally:
        dist.destroy_process_group()
