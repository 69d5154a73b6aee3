"""From `data:` config to the loader the trainer iterates: sources -> tokenised (cached) -> mixed ->
packed -> shuffled into data-parallel steps.

The first rank of each node tokenises and writes the caches while the others wait at a barrier,
then every rank opens the same memory-mapped stores.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Union

import numpy as np

from ..config import Config, ConfigError
from .dataset_info import resolve_sources
from .images import ImageInputs
from .loader import StepLoader, StreamLoader
from .mixing import mix, mixed_index
from .packing import pack
from .pretrain import build_pretrain_store
from .readers import RowErrors
from .rows import PackedRows, Row, SampleRows, SequenceRows, packed_row, sample_row
from .sft import DataStats, build_source_store, iter_samples

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
    if d.streaming:
        return _streaming(cfg, tokenizer, sources, steps, images)

    # Tokenise once per node, then everyone opens the stores.
    if local_rank == 0:
        built = _stores(cfg, tokenizer, sources, build=True, images=images)
    barrier()
    if local_rank != 0:
        built = _stores(cfg, tokenizer, sources, build=False, images=images)
    stores, stats, cached = built

    if d.is_pretraining:
        rows = SequenceRows(stores[0], d.cutoff_len)
        if len(rows) == 0:
            raise ConfigError(f"data.dataset: {stats['mg'].tokens} tokens make no sequence of data.cutoff_len="
                              f"{d.cutoff_len} + 1 tokens; add text or lower cutoff_len")
    else:
        sizes = [len(s) for s in stores]
        if sum(sizes) == 0:
            raise ConfigError(f"data.dataset: no trainable samples in {d.dataset!r} "
                              f"({'; '.join(f'{k}: {v.summary()}' for k, v in stats.items())})")
        rows = SampleRows(stores, mixed_index(sizes, d.mix_strategy, d.interleave_probs, t.seed))
        if d.packing:
            rows = PackedRows(rows, pack(rows.lengths(), d.cutoff_len))
    loader = StepLoader(rows, seed=t.seed, shuffle=not d.disable_shuffling, num_workers=d.dataloader_num_workers,
                        pin_memory=False, **steps)
    return TrainData(loader, stats, len(rows), cached)


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

    def make_rows(epoch: int) -> Iterator[Row]:
        def factory(source):
            def rows():
                errors = RowErrors(d.skip_bad_rows)
                for sample in iter_samples(source, d, tokenizer, stats[source.name], errors, images):
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
