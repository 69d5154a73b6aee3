"""Evaluation rows: a validation share split off the training rows (data.val_size), or rows of their own
(data.eval_dataset), read as the training rows are (same template, cutoff, packing, cache).

The split is deterministic (the training seed) and made on samples before packing, so no sample is in
both; the training rows keep their order. Evaluation reads its rows in file order without shuffling,
in steps of per_device_eval_batch_size per data-parallel rank; an incomplete last step is filled with
masked repeats, as training's is, so every evaluation row counts exactly once.
"""

from __future__ import annotations

import dataclasses
from typing import Union

import numpy as np

from ..config import Config, ConfigError
from .dataset_info import resolve_sources
from .loader import StepLoader
from .rows import SampleRows


class RowSubset:
    """Rows `ids` of map-style rows (pretraining sequences), in that order."""

    def __init__(self, rows, ids: np.ndarray):
        self.rows, self.ids = rows, ids

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int):
        return self.rows[int(self.ids[i])]

    @property
    def groups(self):
        """The rows' groups (StepLoader: a step from one group), when the rows have them."""
        groups = getattr(self.rows, "groups", None)
        return None if groups is None else np.asarray(groups)[self.ids]


def validation_count(val_size: Union[int, float], rows: int) -> int:
    """Rows val_size asks for: a fraction (0 < f < 1) of `rows`, at least one, or a count; ConfigError when
    nothing would be left to train on."""
    count = max(1, round(rows * val_size)) if isinstance(val_size, float) and val_size < 1 else int(val_size)
    if count >= rows:
        raise ConfigError(f"data.val_size={val_size}: takes {count} of the {rows} training samples (counted before "
                          "packing), leaving none to train on; use a smaller fraction or count, or data.eval_dataset")
    return count


def split_validation(rows, val_size: Union[int, float], seed: int):
    """(training rows, validation rows): a seeded choice of rows leaves for validation; both keep their order."""
    n = len(rows)
    chosen = np.zeros(n, dtype=bool)
    chosen[np.random.default_rng(seed).permutation(n)[:validation_count(val_size, n)]] = True
    if isinstance(rows, SampleRows):
        return SampleRows(rows.stores, rows.index[~chosen]), SampleRows(rows.stores, rows.index[chosen])
    return RowSubset(rows, np.flatnonzero(~chosen)), RowSubset(rows, np.flatnonzero(chosen))


def eval_data_config(cfg: Config):
    """The data section with eval_dataset in the place of dataset (for reading its sources)."""
    return dataclasses.replace(cfg.data, dataset=cfg.data.eval_dataset, mix_strategy="concat", interleave_probs=None)


def eval_sources(cfg: Config) -> list:
    try:
        return resolve_sources(eval_data_config(cfg))
    except ConfigError as exc:
        raise ConfigError(f"data.eval_dataset: {exc}") from None


def eval_loader(rows, steps: dict, cfg: Config) -> StepLoader:
    """This rank's evaluation steps over `rows` (`steps`: the training loader's rank, world, pad, cp and
    images arguments)."""
    t = cfg.training
    batch = t.per_device_eval_batch_size or t.per_device_train_batch_size
    return StepLoader(rows, seed=t.seed, shuffle=False, num_workers=0, pin_memory=False,
                      **{**steps, "batch_size": batch, "grad_accum": 1, "drop_last": False})


def has_eval_data(cfg: Config) -> bool:
    return cfg.data.eval_dataset is not None or bool(cfg.data.val_size)

