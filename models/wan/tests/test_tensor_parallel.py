"""Tensor parallel on the Wan DiT equals one piece: the output and every parameter gradient with self/cross
attention split by heads (q/k norms over all heads summing their statistic over the ranks), the FFN by
columns, each rank keeping its share of the video tokens between blocks, alone and with Ulysses CP."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from shardzoo.testing import training_env

WORKER = Path(__file__).with_name("cp_worker.py")


@pytest.mark.parametrize("tp,cp,timestep", [(2, 1, "per-sample"), (2, 2, "per-token")],
                         ids=["tp2", "tp2xcp2-per-token"])
def test_tp_equals_one_process(tmp_path, tp, cp, timestep):
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                           str(tp * cp), str(WORKER), str(tmp_path), timestep, str(tp)], capture_output=True,
                          text=True, timeout=300, env=training_env())
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = torch.load(tmp_path / "cp.pt")
    (ref_out, ref_grads), (out, grads) = result["ref"], result["cp"]
    # fp32; the same per-head attention, sums in another order (row-parallel partial sums, the norms'
    # statistic over the ranks): measured <= 3e-7 (output) and 2e-6 (gradients) of each tensor's largest
    # entry. A head's columns or a norm statistic taken from one rank only moves them by > 1e-2.
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-5 * float(ref_out.abs().max()))
    assert sorted(grads) == sorted(ref_grads)
    for name, want in ref_grads.items():
        torch.testing.assert_close(grads[name], want, rtol=0, atol=1e-5 * float(want.abs().max()),
                                   msg=lambda m, name=name: f"grad of {name}: {m}")
