"""Context-parallel pieces that need no process group: the head rule, the sequence split of a
batch, and the refusals. Loss and gradient equality on gloo ranks is tested per model package
(shardzoo.testing.context_parallel)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn as nn
from shardzoo.config import ConfigError
from shardzoo.data.context_split import split_sequence
from shardzoo.data.loader import collate
from shardzoo.data.rows import Row, packed_row, sample_row
from shardzoo.ops import IGNORE_INDEX, CoreAttention
from shardzoo.parallel import apply_context_parallel
from shardzoo.parallel.context import _ulysses, check_heads


@pytest.mark.parametrize("heads,kv,cp", [(8, 8, 2), (8, 2, 2), (8, 2, 4), (8, 1, 8), (32, 8, 4), (64, 8, 16)])
def test_heads_that_split(heads, kv, cp):
    check_heads(heads, kv, cp)


@pytest.mark.parametrize("heads,kv,cp,message", [
    (6, 2, 4, "has 6 attention heads, which do not split evenly over 4 ranks"),
    (12, 3, 2, "has 3 key/value heads; Ulysses needs cp_size to divide them or be a multiple of them"),
    (24, 8, 12, "has 8 key/value heads"),
])
def test_heads_that_do_not_split(heads, kv, cp, message):
    with pytest.raises(ConfigError, match=f"parallel.cp_size={cp}: the model {message}"):
        check_heads(heads, kv, cp)


def _rows(packed: bool) -> list[Row]:
    rng = np.random.default_rng(0)
    samples = [sample_row(rng.integers(1, 100, n), np.arange(n) >= 2) for n in (5, 9, 7)]
    return [packed_row(samples[:2]), packed_row(samples[2:])] if packed else samples


@pytest.mark.parametrize("packed", [False, True])
@pytest.mark.parametrize("cp", [2, 4])
def test_split_sequence_slices_the_padded_rows(packed, cp):
    rows = _rows(packed)
    full = collate(rows, pad_id=0, pad_to_multiple_of=cp)
    longest = max(len(r.input_ids) for r in rows)
    assert full.input_ids.shape[1] == -(-longest // cp) * cp
    assert full.targets[:, longest:].eq(IGNORE_INDEX).all() and not full.token_mask[:, longest:].any()
    parts = [split_sequence(full, r, cp) for r in range(cp)]
    for key in ("input_ids", "targets", "token_mask"):
        assert torch.equal(torch.cat([getattr(p, key) for p in parts], dim=1), getattr(full, key)), key
    # Positions keep counting from the row's (packed: the document's) start on every slice.
    want_positions = full.position_ids if packed else torch.arange(full.input_ids.shape[1]).expand_as(full.input_ids)
    assert torch.equal(torch.cat([p.position_ids for p in parts], dim=1), want_positions)
    # Attention sees the whole row, so document ids stay whole.
    for p in parts:
        assert (p.document_ids is None) == (not packed)
        if packed:
            assert torch.equal(p.document_ids, full.document_ids)
    assert sum(p.num_targets for p in parts) == full.num_targets
    assert sum(p.num_tokens for p in parts) == full.num_tokens


def test_collate_gives_packed_rows_their_document_ids():
    batch = collate(_rows(True), pad_id=0, pad_to_multiple_of=4)
    # Row 0: documents of 5 and 9 tokens, then 2 padding tokens as a document of their own.
    assert batch.document_ids[0].tolist() == [1] * 5 + [2] * 9 + [3] * 2
    assert batch.document_ids[1].tolist() == [1] * 7 + [2] * 9


def test_only_attention_kernels_are_wrapped():
    model = nn.ModuleDict({"attn": nn.ModuleDict({"core": CoreAttention(), "proj": nn.Linear(2, 2)})})
    with pytest.raises(ConfigError, match=r"parallel.cp_modules: \['attn.proj'\] are not attention kernels"):
        apply_context_parallel(model, ["attn.proj"], cp_mesh=None)
    with pytest.raises(ValueError, match=r"parallel.cp_modules: pattern\(s\) \['attn.kernel'\] match no module"):
        apply_context_parallel(model, ["attn.kernel"], cp_mesh=None)


def test_the_kernel_wrapper_checks_before_any_exchange():
    wrapped = _ulysses(CoreAttention().forward, cp_size=2, cp_rank=0, group=None)
    q = torch.zeros(1, 4, 3, 8)
    with pytest.raises(ConfigError, match="the attention kernel has 3 attention heads"):
        wrapped(q, q, q)
    q = torch.zeros(1, 4, 4, 8)
    with pytest.raises(ValueError, match="document_ids cover 4 tokens but the sequence has 4 x 2"):
        wrapped(q, q, q, document_ids=torch.zeros(1, 4, dtype=torch.long))


def test_sequence_shard_is_inert_until_parallelized_and_refuses_uneven_splits():
    from shardzoo.parallel.context import SequenceShard

    shard = SequenceShard()
    x = torch.arange(12.0).view(1, 6, 2)
    assert shard.split(x) is x and shard.gather(x) is x
    shard.cp = (4, 1, None)  # as apply_context_parallel arms it: (size, rank, group)
    with pytest.raises(ValueError, match="cp_size=4: 6 tokens do not split evenly over 4 ranks"):
        shard.split(x)
    shard.cp = (3, 1, None)
    assert torch.equal(shard.split(x), x[:, 2:4])
