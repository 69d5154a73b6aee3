"""Learning-rate schedule state restored across optimizer group layouts."""

from __future__ import annotations

import torch


def load_scheduler_state(scheduler: torch.optim.lr_scheduler.LRScheduler, state: dict) -> None:
    """Restore a schedule saved by a run whose optimizer had another number of parameter groups (the
    groups follow the sharding layout, e.g. expert parallel on or off). Every group runs the same
    schedule, so a per-group value the saved groups agree on applies to all current groups."""
    state = dict(state)
    groups = len(scheduler.optimizer.param_groups)
    for key in ("base_lrs", "_last_lr"):
        values = state.get(key)
        if isinstance(values, list) and values and len(values) != groups:
            if any(v != values[0] for v in values):
                raise ValueError(f"the saved schedule has per-group {key} {values} for {len(values)} groups, this "
                                 f"run has {groups} groups; resume with the same optimizer settings")
            state[key] = [values[0]] * groups
    lambdas = state.get("_lr_lambdas")
    if isinstance(lambdas, list) and len(lambdas) != groups and all(f is None for f in lambdas):
        state["_lr_lambdas"] = [None] * groups
    scheduler.load_state_dict(state)
