"""HF import reads each rank's rows only (checkpoint/lazy_tensors.py): under every parallel layout the
parameters a run builds, gathered whole, equal the checkpoint read eagerly, bit for bit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from shardzoo.testing import training_env
from shardzoo_qwen3 import MOE_SPEC, SPEC, Qwen3ForCausalLM, Qwen3MoeForCausalLM, moe_tiny_config, tiny_config

WORKER = Path(__file__).with_name("import_worker.py")


def write_checkpoint(path: Path, moe: bool) -> None:
    """A random checkpoint in the hub's layout (one tensor per expert for the MoE), in two files."""
    spec = MOE_SPEC if moe else SPEC
    # 130 vocab rows split unevenly over 2 and 4 ranks (FSDP2's last shard is shorter).
    config = moe_tiny_config(vocab_size=130) if moe else tiny_config(vocab_size=130)
    torch.manual_seed(0)
    model = (Qwen3MoeForCausalLM if moe else Qwen3ForCausalLM)(config)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    tensors = dict(spec.adapter.to_hf(model.state_dict().items(), config))
    names = sorted(tensors)
    path.mkdir()
    halves = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for file, part in halves.items():
        save_file({n: tensors[n].contiguous() for n in part}, str(path / file))
    index = {"metadata": {}, "weight_map": {n: f for f, part in halves.items() for n in part}}
    (path / "model.safetensors.index.json").write_text(json.dumps(index))
    config.architectures = list(spec.architectures)
    config.to_json_file(path / "config.json")


@pytest.mark.parametrize("moe,nproc,parallel,placement", [
    (False, 2, {}, "Shard(dim=0)"),
    (False, 2, {"tp_size": 2}, "Shard(dim=0)"),  # FSDP2's strided split over TP: read whole, then split
    (True, 4, {"ep_size": 2}, "Shard(dim=1)"),  # experts: ep on dim 0, ep_fsdp on the concatenated dim 1
    pytest.param(False, 4, {"fsdp_size": 2}, "Replicate()", marks=pytest.mark.slow),  # HSDP
], ids=["fsdp2", "tp2", "moe-ep2x2", "hsdp2x2"])
def test_every_layout_loads_the_checkpoint_exactly(tmp_path, moe, nproc, parallel, placement):
    write_checkpoint(tmp_path / "ckpt", moe)
    out = tmp_path / "ranks.json"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                           str(nproc), str(WORKER), str(tmp_path / "ckpt"), str(out), json.dumps(parallel)],
                          capture_output=True, text=True, env=training_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-6000:]
    ranks = json.loads(out.read_text())
    assert [r["differ"] for r in ranks] == [[]] * nproc
    assert any(placement in p for p in ranks[0]["placements"].values()), ranks[0]["placements"]
