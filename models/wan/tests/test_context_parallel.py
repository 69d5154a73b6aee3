"""Ulysses CP over the Wan DiT's video tokens on gloo ranks equals CP=1: the output (gathered on
every rank) and every parameter gradient (the ranks' shares summed), for a timestep per sample and
per token, at cp 2 and 4; and tensor parallel (self/cross attention split by heads, their q/k norms
over all heads summing the statistic over the ranks, the FFN by columns, each rank keeping its share
of the video tokens between blocks), alone and with CP."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from shardzoo.testing import training_env

WORKER = Path(__file__).with_name("cp_worker.py")


# cp 4 (4 ranks) splits the same way over more ranks: in `nox -s slow`.
CASES = [(2, 1, timestep) for timestep in ("per-sample", "per-token")]
CASES += [pytest.param(4, 1, timestep, marks=pytest.mark.slow) for timestep in ("per-sample", "per-token")]
CASES += [(1, 2, "per-sample"), pytest.param(2, 2, "per-token", marks=pytest.mark.slow)]


@pytest.mark.parametrize("cp,tp,timestep", CASES, ids=["cp2-per-sample", "cp2-per-token", "cp4-per-sample",
                                                       "cp4-per-token", "tp2", "tp2xcp2-per-token"])
def test_split_equals_one_process(tmp_path, cp, tp, timestep):
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                           str(cp * tp), str(WORKER), str(tmp_path), timestep, str(tp)], capture_output=True,
                          text=True, timeout=300, env=training_env())
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = torch.load(tmp_path / "cp.pt")
    (ref_out, ref_grads), (out, grads) = result["ref"], result["cp"]
    # fp32; the same per-head attention, sums in another order (the ranks' gradient shares, row-parallel
    # partial sums, the norms' statistic over the tp ranks): measured <= 1e-6 of each tensor's largest
    # entry under CP, <= 2e-6 under TP. A rope or modulation slice off by one chunk, a head's columns or a
    # norm statistic from one rank only is > 1e-2.
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-5 * float(ref_out.abs().max()))
    assert sorted(grads) == sorted(ref_grads)
    for name, want in ref_grads.items():
        torch.testing.assert_close(grads[name], want, rtol=0, atol=1e-5 * float(want.abs().max()),
                                   msg=lambda m, name=name: f"grad of {name}: {m}")
