"""From `data:` config to the loader the trainer iterates: sources -> tokenised (cached) -> mixed ->
packed -> shuffled into data-parallel steps.

The first rank of each node tokenises and writes the caches while the others wait at a barrier,
then every rank opens the same memory-mapped stores.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Union

import numpy as np

from ..config import Config, ConfigError
from .dataset_info import resolve_sources
from .evaluation import eval_data_config, eval_loader, eval_sources, split_validation
from .images import ImageInputs
from .loader import StepLoader, StreamLoader
from .mixing import mix, mixed_index
from .packing import pack
from .pretrain import build_pretrain_store
from .readers import RowErrors
from .rows import PackedRows, Row, SampleRows, SequenceRows, packed_row, sample_row
from .sft import DataStats, build_source_store, iter_samples
from .work_share import WorkShare

log = logging.getLogger(__name__)


@dataclass
class TrainData:
    loader: Union[StepLoader, StreamLoader]
    stats: dict[str, DataStats] = field(default_factory=dict)
    """Per source; for a stream they fill up while training."""
    rows: int | None = None
    """Rows (samples, packed rows or sequences) per epoch; None for a stream."""
    cached: bool = False
    tokenizer: Any = None
    """The tokenizer the rows were read with (saved with checkpoints and exports); None without text."""
    eval_loader: Optional[StepLoader] = None
    """Evaluation steps (data.val_size or data.eval_dataset); None without evaluation data."""
    eval_rows: int = 0

    def skipped(self) -> int:
        return sum(s.bad_rows + s.empty_answers + s.empty_texts + s.no_labels + s.truncated
                   for s in self.stats.values())

    def describe(self) -> str:
        total = DataStats()
        for s in self.stats.values():
            total += s
        per_source = ", ".join(f"{name} {s.samples}" for name, s in self.stats.items())
        rows = "streamed" if self.rows is None else f"{self.rows} rows"
        cache = " (from cache)" if self.cached else ""
        return f"{rows} <- {total.summary()} [{per_source}]{cache}"


def _to_row(sample) -> Row:
    ids = np.asarray(sample.input_ids, dtype=np.int64)
    row = sample_row(ids, np.asarray(sample.labels) != -100)
    row.images = sample.images
    return row


def shuffle_buffer(items: Iterator, size: int, seed: int) -> Iterator:
    """Seeded reservoir-style shuffle of a stream, holding at most `size` items."""
    rng = np.random.default_rng(seed)
    buf = []
    for item in items:
        if len(buf) < size:
            buf.append(item)
            continue
        k = int(rng.integers(size))
        yield buf[k]
        buf[k] = item
    rng.shuffle(buf)
    yield from buf


def pack_stream(rows: Iterator[Row], capacity: int, window: int) -> Iterator[Row]:
    """Packing of a stream: best-fit over windows of `window` samples."""
    while True:
        chunk = [r for _, r in zip(range(window), rows)]
        if not chunk:
            return
        for ids in pack(np.asarray([len(r.input_ids) for r in chunk]), capacity):
            yield packed_row([chunk[int(j)] for j in ids])


def build_train_data(cfg: Config, tokenizer, *, rank: int, world: int, local_rank: int,
                     barrier: Callable[[], None], cp_rank: int = 0, cp_size: int = 1,
                     images: ImageInputs | None = None) -> TrainData:
    """rank/world: among the data-parallel ranks (the cp_size ranks of a context-parallel group
    share one, and keep slice cp_rank of each row). `images`: how the model takes the rows' images
    (a vision-language model's ModelSpec.images); None = text only, rows with images are bad rows."""
    d, t = cfg.data, cfg.training
    sources = resolve_sources(d)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    steps = dict(rank=rank, world=world, batch_size=t.per_device_train_batch_size,
                 grad_accum=t.gradient_accumulation_steps, pad_id=pad_id, drop_last=d.dataloader_drop_last,
                 cp_rank=cp_rank, cp_size=cp_size, pixels=images.pixels if images else None,
                 loss_reduction=t.loss_reduction)
    eval_rows = None
    if d.eval_dataset is not None:
        eval_rows = _eval_dataset_rows(cfg, tokenizer, local_rank, barrier, images)
    if d.streaming:
        return _with_eval(_streaming(cfg, tokenizer, sources, steps, images), eval_rows, steps, cfg)

    # Tokenise once per node, then everyone opens the stores.
    stores, stats, cached = _stores_once_per_node(cfg, tokenizer, sources, local_rank, barrier, images)

    rows = _rows(cfg, stores, stats, "data.dataset", d.mix_strategy, d.interleave_probs)
    if d.val_size:
        rows, eval_rows = split_validation(rows, d.val_size, t.seed)
    rows, eval_rows = _packed(cfg, rows), _packed(cfg, eval_rows)
    loader = StepLoader(rows, seed=t.seed, shuffle=not d.disable_shuffling, num_workers=d.dataloader_num_workers,
                        pin_memory=False, **steps)
    return _with_eval(TrainData(loader, stats, len(rows), cached), eval_rows, steps, cfg)


def _rows(cfg: Config, stores, stats, key: str, mix_strategy: str, probs):
    """Sequences (pretraining) or mixed samples, not yet packed."""
    d = cfg.data
    if d.is_pretraining:
        rows = SequenceRows(stores[0], d.cutoff_len)
        if len(rows) == 0:
            raise ConfigError(f"{key}: {stats['mg'].tokens} tokens make no sequence of data.cutoff_len="
                              f"{d.cutoff_len} + 1 tokens; add text or lower cutoff_len")
        return rows
    sizes = [len(s) for s in stores]
    if sum(sizes) == 0:
        raise ConfigError(f"{key}: no trainable samples in {d.dataset!r} "
                          f"({'; '.join(f'{k}: {v.summary()}' for k, v in stats.items())})")
    return SampleRows(stores, mixed_index(sizes, mix_strategy, probs, cfg.training.seed))


def _packed(cfg: Config, rows):
    if rows is not None and cfg.data.packing and isinstance(rows, SampleRows):
        return PackedRows(rows, pack(rows.lengths(), cfg.data.cutoff_len))
    return rows


def _stores_once_per_node(cfg: Config, tokenizer, sources, local_rank: int, barrier, images):
    if local_rank == 0:
        built = _stores(cfg, tokenizer, sources, build=True, images=images)
    barrier()
    if local_rank != 0:
        built = _stores(cfg, tokenizer, sources, build=False, images=images)
    return built


def _eval_dataset_rows(cfg: Config, tokenizer, local_rank: int, barrier, images):
    eval_cfg = dataclasses.replace(cfg, data=eval_data_config(cfg))
    stores, stats, _ = _stores_once_per_node(eval_cfg, tokenizer, eval_sources(cfg), local_rank, barrier, images)
    return _rows(eval_cfg, stores, stats, "data.eval_dataset", "concat", None)


def _with_eval(data: TrainData, eval_rows, steps: dict, cfg: Config) -> TrainData:
    if eval_rows is not None:
        data.eval_loader = eval_loader(_packed(cfg, eval_rows), steps, cfg)
        data.eval_rows = len(data.eval_loader.rows)
    return data


def _stores(cfg: Config, tokenizer, sources, build: bool, images: ImageInputs | None = None):
    d = cfg.data
    if d.is_pretraining:
        store, stats, cached = build_pretrain_store(sources, d, tokenizer, build=build)
        return [store], {"mg": stats}, cached
    stores, stats, cached = [], {}, True
    for source in sources:
        store, one, hit = build_source_store(source, d, tokenizer, build=build, images=images)
        stores.append(store)
        stats[source.name] = one
        cached &= hit
    return stores, stats, cached


def _streaming(cfg: Config, tokenizer, sources, steps: dict, images: ImageInputs | None) -> TrainData:
    d, t = cfg.data, cfg.training
    stats = {s.name: DataStats() for s in sources}
    # Every rank walks the same stream: each tokenises its share of it (collective from here on).
    share = WorkShare.over_all_ranks()

    def make_rows(epoch: int) -> Iterator[Row]:
        def factory(source):
            def rows():
                errors = RowErrors(d.skip_bad_rows)
                for sample in iter_samples(source, d, tokenizer, stats[source.name], errors, images, share):
                    yield _to_row(sample)
                stats[source.name].bad_rows += errors.count
            return rows

        stream = (row for _, row in mix([factory(s) for s in sources], d.mix_strategy, d.interleave_probs,
                                        t.seed + epoch))
        if not d.disable_shuffling:
            stream = shuffle_buffer(stream, d.buffer_size, t.seed + epoch)
        if d.packing:
            stream = pack_stream(stream, d.cutoff_len, d.buffer_size)
        return stream

    return TrainData(StreamLoader(make_rows, **steps), stats)
