import math

import pytest
import torch
from shardzoo.train.lr_schedule import build_scheduler, lr_at, warmup_steps


@pytest.mark.parametrize("kind", ["cosine", "linear", "constant"])
def test_warmup_then_schedule(kind):
    total, warm = 100, warmup_steps(100, 0.1)
    lrs = [lr_at(s, lr=1.0, min_lr=0.1, warmup=warm, total_steps=total, kind=kind) for s in range(total)]
    assert warm == 10
    assert lrs[:10] == pytest.approx([(i + 1) / 10 for i in range(10)])
    assert lrs[10] == pytest.approx(1.0)
    if kind == "constant":
        assert all(x == 1.0 for x in lrs[10:])
    else:
        assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))  # monotone decay
        assert lr_at(total, lr=1.0, min_lr=0.1, warmup=warm, total_steps=total, kind=kind) == pytest.approx(0.1)
    if kind == "cosine":
        mid = 10 + 45
        assert lrs[mid] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    if kind == "linear":
        assert lrs[55] == pytest.approx(1.0 - 0.9 * 0.5)


def test_scheduler_drives_optimizer():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.AdamW([p], lr=2e-3)
    sched = build_scheduler(opt, lr=2e-3, min_lr=2e-4, warmup_ratio=0.0, total_steps=4, kind="linear")
    seen = []
    for _ in range(4):
        seen.append(sched.get_last_lr()[0])
        opt.step()
        sched.step()
    assert seen == pytest.approx([2e-3, 2e-3 - 1.8e-3 / 4, 2e-3 - 1.8e-3 / 2, 2e-3 - 1.8e-3 * 3 / 4])
