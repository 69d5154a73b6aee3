"""Parity assertions between our modules and reference implementations."""

from __future__ import annotations

import torch
import torch.nn as nn


def assert_grads_close(ours: nn.Module, ref: nn.Module, *, name_map=lambda n: n, atol: float, rtol: float,
                       skip: tuple[str, ...] = ()) -> int:
    """Every parameter of `ref` with a gradient must match ours (by mapped name). Returns the count."""
    our_params = dict(ours.named_parameters())
    checked = 0
    for name, p in ref.named_parameters():
        if name in skip:
            continue
        mine = our_params.get(name_map(name))
        assert mine is not None, f"parameter {name} has no counterpart {name_map(name)!r} in {type(ours).__name__}"
        assert (p.grad is None) == (mine.grad is None), f"{name}: gradient present on one side only"
        if p.grad is not None:
            torch.testing.assert_close(mine.grad, p.grad, atol=atol, rtol=rtol,
                                       msg=lambda m, name=name: f"grad of {name}: {m}")
            checked += 1
    return checked
