"""data.val_size's split (data/evaluation.py): deterministic by seed, disjoint, covering every row, training
order kept; fractions and counts; the evaluation loader reads every row once, unshuffled."""

from __future__ import annotations

import numpy as np
import pytest
from shardzoo.config import ConfigError
from shardzoo.data.evaluation import RowSubset, split_validation, validation_count
from shardzoo.data.loader import StepLoader
from shardzoo.data.rows import SampleRows, sample_row


@pytest.mark.parametrize("val_size,rows,count", [(0.1, 100, 10), (0.001, 100, 1), (7, 100, 7), (7.0, 100, 7)])
def test_counts(val_size, rows, count):
    assert validation_count(val_size, rows) == count


def test_a_split_that_leaves_nothing_is_refused():
    with pytest.raises(ConfigError, match="data.val_size=10: takes 10 of the 10 training samples"):
        validation_count(10, 10)


class Store:
    def __init__(self, n):
        self.n = n

    def document(self, i):
        return np.full(3, i), np.ones(3, bool)

    def document_images(self, i):
        return ()


def test_sample_rows_split_is_seeded_disjoint_and_keeps_the_order():
    index = np.stack([np.zeros(50, int), np.arange(50)[::-1]], axis=1)  # a mixed order, reversed
    rows = SampleRows([Store(50)], index)
    train, val = split_validation(rows, 0.2, seed=3)
    again, val_again = split_validation(rows, 0.2, seed=3)
    _, other = split_validation(rows, 0.2, seed=4)
    docs = lambda r: [int(d) for _, d in r.index]  # noqa: E731
    assert len(val) == 10 and len(train) == 40 and docs(val) == docs(val_again) and docs(train) == docs(again)
    assert docs(val) != docs(other)
    assert sorted(docs(train) + docs(val)) == list(range(50)) and not set(docs(train)) & set(docs(val))
    assert docs(train) == [d for d in docs(rows) if d in set(docs(train))]  # training order kept


def test_other_rows_split_through_a_subset_and_the_loader_reads_each_row_once():
    rows = [sample_row(np.full(4, i), np.ones(4, bool)) for i in range(10)]
    train, val = split_validation(rows, 3, seed=0)
    assert isinstance(val, RowSubset) and len(val) == 3 and len(train) == 7
    loader = StepLoader(val, rank=0, world=2, batch_size=1, grad_accum=1, seed=0, shuffle=False, pad_id=0)
    seen = []
    for step in range(loader.steps_per_epoch):
        for rank in (0, 1):
            loader.rank = rank
            (batch,) = loader.step_batches(0, step)
            seen += [int(x) for x, live in zip(batch.input_ids[:, 0], batch.token_mask[:, 0]) if live]
    assert sorted(seen) == sorted(int(val[i].input_ids[0]) for i in range(3))
