import json
from pathlib import Path

import numpy as np
import pytest
import torch
from shardzoo.config import Config, ConfigError, DataConfig, TrainingConfig
from shardzoo.data import Row, StepLoader, build_train_data, collate, load_tokenizer
from shardzoo.data.mixing import mixed_index
from shardzoo.data.packing import pack
from shardzoo.data.rows import packed_row, sample_row

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(str(REPO / "data/tokenizer"))


def rows_of(n, length=2):
    return [Row(np.full(length, i), np.full(length, i)) for i in range(n)]


def first_ids(batches):
    return [b.input_ids[:, 0].tolist() for b in batches]


def test_collate_pads_masks_and_keeps_packed_positions():
    a = sample_row(np.array([5, 6, 7]), np.array([False, True, True]))
    b = sample_row(np.array([8, 9]), np.array([True, True]))
    assert a.targets.tolist() == [6, 7, -100]
    batch = collate([a, b], pad_id=0)
    assert batch.input_ids.tolist() == [[5, 6, 7], [8, 9, 0]]
    assert batch.targets.tolist() == [[6, 7, -100], [9, -100, -100]]
    assert (batch.num_targets, batch.num_tokens, batch.position_ids) == (3, 5, None)
    masked = collate([a, b], pad_id=0, masked=[False, True])
    assert masked.targets[1].tolist() == [-100] * 3 and masked.num_tokens == 3
    packed = collate([packed_row([a, b]), b], pad_id=0)
    assert packed.position_ids.tolist() == [[0, 1, 2, 0, 1], [0, 1, 0, 1, 2]]
    # the last token of a document never predicts the first of the next
    assert packed.targets[0].tolist() == [6, 7, -100, 9, -100]


def test_ranks_read_disjoint_slices_of_the_same_global_batches():
    rows = rows_of(40)
    kw = dict(seed=3, shuffle=True, pad_id=0)
    single = StepLoader(rows, rank=0, world=1, batch_size=4, grad_accum=2, **kw)
    ranks = [StepLoader(rows, rank=r, world=2, batch_size=2, grad_accum=2, **kw) for r in range(2)]
    assert single.steps_per_epoch == ranks[0].steps_per_epoch == 5
    for epoch in (0, 1):
        for step in range(5):
            one = single.step_batches(epoch, step)
            parts = [r.step_batches(epoch, step) for r in ranks]
            for micro in range(2):
                seen = [sorted(p[micro].input_ids[:, 0].tolist()) for p in parts]
                assert not set(seen[0]) & set(seen[1])
                assert sorted(seen[0] + seen[1]) == sorted(one[micro].input_ids[:, 0].tolist())
    assert single.order(0)[0].tolist() != single.order(1)[0].tolist()
    assert StepLoader(rows, rank=0, world=1, batch_size=4, grad_accum=1, seed=3, shuffle=False,
                      pad_id=0).order(0)[0].tolist() == list(range(40))


def test_incomplete_last_step_is_filled_with_masked_rows_or_dropped():
    rows = rows_of(10)
    loader = StepLoader(rows, rank=0, world=1, batch_size=4, grad_accum=1, seed=0, shuffle=True, pad_id=0)
    assert loader.steps_per_epoch == 3
    it = iter(loader)
    steps = [next(it)[0] for _ in range(3)]
    live = [i for b in steps for i, t in zip(b.input_ids[:, 0].tolist(), b.targets[:, 0].tolist()) if t != -100]
    assert sorted(live) == list(range(10))  # every row once; the 2 fill rows carry no target
    assert sum(b.num_targets for b in steps) == 10 * 2
    assert loader.state_dict()["epoch"] == 1
    dropping = StepLoader(rows, rank=0, world=1, batch_size=4, grad_accum=1, seed=0, shuffle=True, pad_id=0,
                          drop_last=True)
    assert dropping.steps_per_epoch == 2
    with pytest.raises(ValueError, match="the dataset has 10 rows but one optimizer step needs 16"):
        StepLoader(rows, rank=0, world=2, batch_size=4, grad_accum=2, seed=0, shuffle=True, pad_id=0, drop_last=True)


@pytest.mark.parametrize("workers", [0, 2])
def test_resumed_loader_sees_exactly_the_unseen_steps(workers):
    rows = rows_of(30)
    kw = dict(rank=1, world=2, batch_size=2, grad_accum=2, seed=7, shuffle=True, pad_id=0)
    reference = iter(StepLoader(rows, **kw))
    full = [first_ids(next(reference)) for _ in range(9)]  # 4 steps per epoch: crosses two epochs
    first = StepLoader(rows, num_workers=workers, **kw)
    it = iter(first)
    seen = [first_ids(next(it)) for _ in range(5)]
    state = json.loads(json.dumps(first.state_dict()))  # must survive a checkpoint's serialisation
    resumed = StepLoader(rows, num_workers=workers, **kw)
    resumed.load_state_dict(state)
    it = iter(resumed)
    rest = [first_ids(next(it)) for _ in range(4)]
    assert seen + rest == full
    other = StepLoader(rows, **{**kw, "seed": 8})
    with pytest.raises(ValueError, match="seed: saved 7, now 8"):
        other.load_state_dict(state)


def test_mixing_concat_and_interleave():
    assert mixed_index([2, 3], "concat", None, 0).tolist() == [[0, 0], [0, 1], [1, 0], [1, 1], [1, 2]]
    under = mixed_index([50, 1000], "interleave_under", [0.5, 0.5], 0)
    assert (under[:, 0] == 0).sum() == 50 and len(under) < 200  # stops when the small one runs out
    over = mixed_index([50, 1000], "interleave_over", [0.2, 0.8], 0)
    big = over[over[:, 0] == 1, 1]
    assert sorted(set(big.tolist())) == list(range(1000))  # every sample of the big source at least once
    assert abs((over[:, 0] == 0).mean() - 0.2) < 0.05  # the small one oversampled by its probability
    assert mixed_index([50, 1000], "interleave_over", [0.2, 0.8], 0).tolist() == over.tolist()


def test_packing_best_fit_keeps_every_sample_once_and_within_capacity():
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 100, size=500)
    packs = pack(lengths, 128)
    assert sorted(np.concatenate(packs).tolist()) == list(range(500))
    assert max(lengths[p].sum() for p in packs) <= 128
    assert lengths.sum() / (128 * len(packs)) > 0.95  # best-fit decreasing leaves little padding
    with pytest.raises(ValueError, match="a sample of 200 tokens does not fit a row of 128"):
        pack(np.array([200]), 128)


def make_cfg(tmp_path, **data):
    d = dict(dataset="alpaca_sample,sharegpt_sample", dataset_dir=str(REPO / "data"), cutoff_len=128,
             cache_dir=str(tmp_path / "cache"))
    d.update(data)
    return Config(data=DataConfig(**d), training=TrainingConfig(output_dir=str(tmp_path), max_steps=5,
                                                                per_device_train_batch_size=4))


def all_rows(data):
    loader = data.loader
    return [loader.rows[i] for i in range(len(loader.rows))]


def build(cfg, tokenizer, rank=0, world=1):
    return build_train_data(cfg, tokenizer, rank=rank, world=world, local_rank=rank, barrier=lambda: None)


def test_tokenised_data_is_cached_by_fingerprint(tmp_path, tokenizer):
    cfg = make_cfg(tmp_path)
    first = build(cfg, tokenizer)
    assert not first.cached and first.rows == 440
    again = build(cfg, tokenizer)
    assert again.cached and again.describe() == first.describe().replace("]", "] (from cache)")
    assert all(np.array_equal(a.input_ids, b.input_ids) and np.array_equal(a.targets, b.targets)
               for a, b in zip(all_rows(first), all_rows(again)))
    stores = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert len(stores) == 2 and not any(p.startswith(".") for p in stores)  # no temporary left behind
    # anything that changes the tokens changes the fingerprint
    build(make_cfg(tmp_path, template="default"), tokenizer)
    build(make_cfg(tmp_path, cutoff_len=64), tokenizer)
    assert len(list((tmp_path / "cache").iterdir())) == 6
    rebuilt = build(make_cfg(tmp_path, overwrite_cache=True), tokenizer)
    assert not rebuilt.cached and len(list((tmp_path / "cache").iterdir())) == 6


def test_parallel_preprocessing_gives_identical_tokens(tmp_path, tokenizer):
    one = build(make_cfg(tmp_path / "a", preprocessing_batch_size=16), tokenizer)
    two = build(make_cfg(tmp_path / "b", preprocessing_num_workers=2, preprocessing_batch_size=16), tokenizer)
    assert one.describe() == two.describe()
    assert all(np.array_equal(a.input_ids, b.input_ids) and np.array_equal(a.targets, b.targets)
               for a, b in zip(all_rows(one), all_rows(two)))


def test_packed_rows_hold_every_sample_once(tmp_path, tokenizer):
    plain = all_rows(build(make_cfg(tmp_path), tokenizer))
    packed_data = build(make_cfg(tmp_path, packing=True), tokenizer)
    packed = all_rows(packed_data)
    assert packed_data.rows < len(plain) / 2 and all(len(r.input_ids) <= 128 for r in packed)
    split = [r.input_ids[s:e].tolist() for r in packed
             for s, e in zip(*_doc_bounds(r.position_ids))]
    assert sorted(split) == sorted(r.input_ids.tolist() for r in plain)
    assert sum((r.targets != -100).sum() for r in packed) == sum((r.targets != -100).sum() for r in plain)


def _doc_bounds(positions):
    starts = np.flatnonzero(positions == 0).tolist()
    return starts, starts[1:] + [len(positions)]


def test_streaming_yields_the_cached_samples_in_file_order(tmp_path, tokenizer):
    cached = all_rows(build(make_cfg(tmp_path, disable_shuffling=True), tokenizer))
    stream = build(make_cfg(tmp_path, streaming=True, disable_shuffling=True), tokenizer)
    assert stream.rows is None
    rows = list(stream.loader.make_rows(0))
    assert len(rows) == len(cached)
    assert all(np.array_equal(a.input_ids, b.input_ids) and np.array_equal(a.targets, b.targets)
               for a, b in zip(rows, cached))
    assert stream.stats["alpaca_sample"].samples == 320
    # a shuffled stream is a permutation, fixed by the seed
    shuffled = [r.input_ids.tolist() for r in build(make_cfg(tmp_path, streaming=True, buffer_size=64),
                                                    tokenizer).loader.make_rows(0)]
    assert shuffled != [r.input_ids.tolist() for r in rows]
    assert sorted(shuffled) == sorted(r.input_ids.tolist() for r in rows)


def test_streaming_resume_and_ranks(tmp_path, tokenizer):
    cfg = make_cfg(tmp_path, streaming=True, buffer_size=32)
    ref = iter(build(cfg, tokenizer).loader)
    full = [first_ids(next(ref)) for _ in range(8)]
    data = build(cfg, tokenizer)
    it = iter(data.loader)
    head = [first_ids(next(it)) for _ in range(3)]
    resumed = build(cfg, tokenizer)
    resumed.loader.load_state_dict(data.loader.state_dict())
    it = iter(resumed.loader)
    assert head + [first_ids(next(it)) for _ in range(5)] == full
    cfg.training.per_device_train_batch_size = 2
    halves = [next(iter(build(cfg, tokenizer, rank=r, world=2).loader))[0] for r in range(2)]
    whole = next(iter(build(make_cfg(tmp_path, streaming=True, buffer_size=32), tokenizer).loader))[0]
    assert unpadded(halves[0]) + unpadded(halves[1]) == unpadded(whole)


def unpadded(batch):
    return [row[:n].tolist() for row, n in zip(batch.input_ids, (batch.input_ids != 0).sum(1))]


def test_data_config_errors(tmp_path, tokenizer, minimal_raw):
    from shardzoo.config import config_from_dict

    def raw_with(**data):
        raw = json.loads(json.dumps(minimal_raw))
        raw["data"].update(data)
        return raw

    with pytest.raises(ConfigError, match="data.streaming: a streamed dataset has no length; set training.max_steps"):
        config_from_dict(raw_with(streaming=True))
    with pytest.raises(ConfigError, match="data.interleave_probs: only used by mix_strategy interleave"):
        config_from_dict(raw_with(interleave_probs=[0.5, 0.5]))
    with pytest.raises(ConfigError, match=r"data.interleave_probs: \[0.5, 0.6\] must be non-negative and sum to 1"):
        config_from_dict(raw_with(mix_strategy="interleave_under", interleave_probs=[0.5, 0.6]))
    with pytest.raises(ConfigError, match="data.packing: mg pretraining data is already cut"):
        config_from_dict(raw_with(data_manager_type="mg", packing=True))
    with pytest.raises(ConfigError, match="data.interleave_probs: 3 probabilities for 2 datasets"):
        build(make_cfg(tmp_path, mix_strategy="interleave_over", interleave_probs=[0.2, 0.3, 0.5]), tokenizer)


def test_square_loss_reduction_weights_each_sample_by_its_target_count():
    def sample(n_targets: int, prompt: int = 2) -> Row:
        n = prompt + n_targets + 1
        return sample_row(np.arange(1, n + 1), np.arange(n) > prompt)

    rows = [sample(4), packed_row([sample(1), sample(9)]), sample(3)]
    batch = collate(rows, pad_id=0, masked=[False, False, True], loss_reduction="square")
    w = batch.loss_weights
    assert torch.allclose(w[0][batch.targets[0] != -100], torch.full((4,), 0.5))
    second = w[1][batch.targets[1] != -100]
    assert torch.allclose(second, torch.tensor([1.0] + [1 / 3] * 9))  # a packed row's documents weigh apart
    assert w[2].sum() == 0 and w[batch.targets == -100].sum() == 0  # filler rows and non-targets weigh 0
    assert batch.loss_normalizer == pytest.approx(4 * 0.5 + 1 + 9 / 3)
    plain = collate(rows, pad_id=0, masked=[False, False, True])
    assert plain.loss_weights is None and plain.loss_normalizer == 4 + 1 + 9


def test_content_fingerprint_follows_the_bytes_not_the_path_or_mtime(tmp_path, tokenizer):
    """data.cache_fingerprint: content keys the cache by what the files hold: a copy elsewhere with a new
    mtime reuses it, an edit that keeps size and mtime does not. stat (the default) is the opposite."""
    import os
    import shutil

    data = tmp_path / "data"
    shutil.copytree(REPO / "data", data, ignore=shutil.ignore_patterns("images", "videos", "tokenizer*"))
    cfg = lambda d, mode: make_cfg(tmp_path, dataset="alpaca_sample", dataset_dir=str(d),  # noqa: E731
                                   cache_fingerprint=mode)
    assert not build(cfg(data, "content"), tokenizer).cached
    moved = tmp_path / "moved"
    shutil.copytree(data, moved)  # another path, fresh mtimes
    assert build(cfg(moved, "content"), tokenizer).cached
    assert not build(cfg(moved, "stat"), tokenizer).cached

    sample = next(f for f in moved.iterdir() if f.name.startswith("alpaca_sample"))
    st = sample.stat()
    text = sample.read_bytes()
    i = text.index(b"a")
    sample.write_bytes(text[:i] + b"b" + text[i + 1:])  # same size
    os.utime(sample, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime
    assert build(cfg(moved, "stat"), tokenizer).cached  # stat cannot see the edit
    assert not build(cfg(moved, "content"), tokenizer).cached


STREAM_STEPS = 12


def stream_cfg(tmp_path):
    """Two interleaved sources of 10 samples each, tokenised in batches of 8 raw rows: 12 steps of 2 x 2
    rows cross an epoch boundary (the stream is walked again) and several tokenising batches."""
    return make_cfg(tmp_path, streaming=True, buffer_size=8, max_samples=10, preprocessing_batch_size=8,
                    mix_strategy="interleave_under")


def stream_steps(loader, n):
    it = iter(loader)
    return [[b.input_ids.tolist() for b in next(it)] for _ in range(n)]


def test_streaming_tokenises_each_rank_share(tmp_path, tokenizer, monkeypatch):
    """Streamed data on 2 gloo ranks: each tokenises about half of the stream (data/work_share.py) and
    still gets exactly the batches the unshared stream gives it, straight through and resumed mid-run."""
    import subprocess
    import sys

    import shardzoo.data.sft as sft
    from shardzoo.testing import training_env

    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(Path(__file__).with_name("stream_share_worker.py")), str(tmp_path)],
                          capture_output=True, text=True, env=training_env(), timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    counted = []
    monkeypatch.setattr(sft, "tokenize_conversations",
                        lambda convs, *a, **k: counted.append(len(convs)) or _tokenize(convs, *a, **k))
    for rank in range(2):
        got = json.loads((tmp_path / f"rank{rank}.json").read_text())
        counted.clear()
        want = stream_steps(build(stream_cfg(tmp_path / "unshared"), tokenizer, rank=rank, world=2).loader,
                            STREAM_STEPS)
        assert got["straight"] == want and got["resumed"] == want
        # The unshared stream tokenised every raw row it read; this rank about half of them.
        assert 0.4 * sum(counted) <= got["tokenised"] <= 0.6 * sum(counted), (got["tokenised"], sum(counted))


def _tokenize(*args, **kwargs):
    from shardzoo.data.templates import tokenize_conversations

    return tokenize_conversations(*args, **kwargs)


class GroupedRows(list):
    """Rows with a group per row (what a video task's size buckets give the loader)."""

    def __init__(self, rows, groups):
        super().__init__(rows)
        self.groups = np.asarray(groups)


@pytest.mark.parametrize("drop_last", [False, True])
def test_grouped_rows_make_each_step_from_one_group_for_any_split(drop_last):
    groups = [0] * 7 + [1] * 4 + [2] * 1
    rows = GroupedRows(rows_of(12), np.random.default_rng(0).permutation(groups))
    kw = dict(seed=5, shuffle=True, pad_id=0, drop_last=drop_last)
    single = StepLoader(rows, rank=0, world=1, batch_size=2, grad_accum=2, **kw)
    ranks = [StepLoader(rows, rank=r, world=2, batch_size=1, grad_accum=2, **kw) for r in range(2)]
    # Steps of 4 rows: group 0 makes 2 (the second filled with 1 masked row, or 1 when dropping), group 1
    # makes 1, group 2 one filled with 3 masked rows (or none).
    steps = 2 if drop_last else 4
    assert single.steps_per_epoch == ranks[0].steps_per_epoch == steps
    for epoch in (0, 1):
        live_rows = []
        for step in range(steps):
            one = single.step_batches(epoch, step)
            ids = [i for b in one for i in b.input_ids[:, 0].tolist()]
            assert len({int(rows.groups[i]) for i in ids}) == 1, ids  # one group per step
            live_rows += [i for b in one for i, t in zip(b.input_ids[:, 0].tolist(), b.targets[:, 0].tolist())
                          if t != -100]
            parts = [r.step_batches(epoch, step) for r in ranks]
            for micro in range(2):  # the ranks' micro-batches make up the same global step
                split = sorted(p[micro].input_ids[0, 0].item() for p in parts)
                assert split == sorted(one[micro].input_ids[:, 0].tolist())
        # Every row once per epoch (a dropped step's rows wait for another epoch's order).
        assert len(live_rows) == len(set(live_rows)) == (8 if drop_last else 12)
    assert single.order(0)[0].tolist() != single.order(1)[0].tolist()  # steps and rows reshuffled


def test_grouped_loader_resumes_and_refuses_other_groups():
    rows = GroupedRows(rows_of(12), [0, 1] * 6)
    kw = dict(rank=0, world=1, batch_size=2, grad_accum=1, seed=1, shuffle=True, pad_id=0)
    reference = iter(StepLoader(rows, **kw))
    full = [first_ids(next(reference)) for _ in range(8)]  # 6 steps per epoch: crosses into the next
    first = StepLoader(rows, **kw)
    it = iter(first)
    seen = [first_ids(next(it)) for _ in range(4)]
    state = json.loads(json.dumps(first.state_dict()))
    resumed = StepLoader(rows, **kw)
    resumed.load_state_dict(state)
    it = iter(resumed)
    assert seen + [first_ids(next(it)) for _ in range(4)] == full
    with pytest.raises(ConfigError, match=r"groups: saved \[6, 6\], now \[4, 8\]"):
        StepLoader(GroupedRows(rows_of(12), [0] * 4 + [1] * 8), **kw).load_state_dict(state)
    with pytest.raises(ConfigError, match=r"groups: saved \[6, 6\], now None"):
        StepLoader(rows_of(12), **kw).load_state_dict(state)
    with pytest.raises(ConfigError, match=r"12 rows \(in groups of \[4, 8\]: each step comes from one group\) but one "
                                          "optimizer step needs 10"):
        StepLoader(GroupedRows(rows_of(12), [0] * 4 + [1] * 8), **{**kw, "batch_size": 10}, drop_last=True)
