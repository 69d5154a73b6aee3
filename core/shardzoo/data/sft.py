"""Supervised fine-tuning data: one source -> tokenised samples, cached on disk by fingerprint.

Rows are read and checked in the main process (cheap, and where errors name their rows);
tokenisation runs in batches, optionally in `preprocessing_num_workers` processes. The result is
a TokenStore keyed by a fingerprint of the files, format, columns, template, tokenizer and
every setting that changes the tokens, so a second run with the same inputs starts at once.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from collections import deque
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional

from ..config import ConfigError, DataConfig
from .dataset_info import DatasetSource
from .fingerprint import cache_root, file_signature, fingerprint, function_signature, tokenizer_signature
from .formats import has_empty_answer, iter_conversations
from .images import ImageInputs, expand_images
from .readers import DataError, RowErrors
from .templates import TEMPLATE_ALIASES, TEMPLATES, Segment, TokenizedSample, tokenize_conversations
from .token_store import TokenStore, TokenStoreWriter
from .work_share import WorkShare
from .workers import map_batches

log = logging.getLogger(__name__)


@dataclass
class DataStats:
    """What happened to the rows of a dataset; logged at start and stored with the cache."""

    rows: int = 0
    samples: int = 0
    tokens: int = 0
    bad_rows: int = 0
    empty_answers: int = 0
    truncated: int = 0
    no_labels: int = 0
    empty_texts: int = 0
    images_cut: int = 0

    def __iadd__(self, other: "DataStats") -> "DataStats":
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def summary(self) -> str:
        skipped = {"bad rows": self.bad_rows, "empty answers": self.empty_answers, "empty texts": self.empty_texts,
                   "no label left after cutoff": self.no_labels,
                   "image tokens cut by cutoff_len": self.images_cut}
        shown = ", ".join(f"{n} {what}" for what, n in skipped.items() if n) or "none"
        return (f"{self.samples} samples / {self.tokens} tokens from {self.rows} rows; skipped: {shown}; "
                f"truncated: {self.truncated}")


def load_tokenizer(path: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    if trust_remote_code:
        log.warning("model.trust_remote_code is enabled: the tokenizer at %s may run its own code", path)
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tok.pad_token_id is None and tok.eos_token_id is None:
        raise ConfigError(f"model.tokenizer_name_or_path: tokenizer at {path} has neither a pad nor an eos token")
    return tok


def template_of(cfg: DataConfig) -> Callable[[list[dict], str], list[Segment]]:
    name = TEMPLATE_ALIASES.get(cfg.template, cfg.template)
    if name not in TEMPLATES:
        raise ConfigError(f"data.template: {cfg.template!r} is unknown; choose one of "
                          f"{', '.join([*TEMPLATES, *TEMPLATE_ALIASES])}")
    return TEMPLATES[name]


def conversations(source: DatasetSource, cfg: DataConfig, eos: str, stats: DataStats, errors: RowErrors,
                  images: ImageInputs | None = None) -> Iterator[tuple[list[Segment], tuple[str, ...], int]]:
    """(rendered segments, image files, image context tokens) of a source's conversations, their
    `<image>` placeholders expanded; empty answers are counted and left out."""
    render = template_of(cfg)
    for where, messages in iter_conversations(source, errors, cfg.cutoff_len):
        stats.rows += 1
        if has_empty_answer(messages):
            stats.empty_answers += 1
            continue
        try:
            segments, context = expand_images(render(messages, eos), messages.images, images, where)
        except DataError as exc:
            errors.handle(exc)
            continue
        yield segments, messages.images, context


def batched(items: Iterable, size: int) -> Iterator[list]:
    it = iter(items)
    while batch := list(itertools.islice(it, size)):
        yield batch


def context_token_id(tokenizer, images: ImageInputs) -> int:
    token_id = tokenizer.convert_tokens_to_ids(images.context_token)
    if token_id is None or token_id == tokenizer.unk_token_id or \
            tokenizer.convert_ids_to_tokens(token_id) != images.context_token:
        raise ConfigError(f"model.tokenizer_name_or_path: the tokenizer has no {images.context_token} token, which "
                          "the model's images are written with; use the model's tokenizer")
    return token_id


def iter_samples(source: DatasetSource, cfg: DataConfig, tokenizer, stats: DataStats,
                 errors: RowErrors, images: ImageInputs | None = None,
                 share: Optional[WorkShare] = None) -> Iterator[TokenizedSample]:
    """Tokenised samples of one source, counted into `stats`; stops at max_samples. `share`: the
    ranks tokenise a part of each batch each and exchange the results (collective; work_share.py)."""
    eos = tokenizer.eos_token or ""
    context_id = context_token_id(tokenizer, images) if images is not None else None
    # Workers get the segments only; each batch's images wait here, in order, for its tokens.
    waiting: deque = deque()

    def segment_batches() -> Iterator[list[list[Segment]]]:
        for chunk in batched(conversations(source, cfg, eos, stats, errors, images), cfg.preprocessing_batch_size):
            waiting.append([(files, context) for _, files, context in chunk])
            batch = [segments for segments, _, _ in chunk]
            yield batch if share is None else share.mine(batch)

    kept = 0
    batches = map_batches(tokenize_conversations, segment_batches(), tokenizer, cfg.preprocessing_num_workers or 1,
                          cutoff_len=cfg.cutoff_len, train_on_prompt=cfg.train_on_prompt)
    for batch in batches if share is None else share.merged(batches):
        for (sample, truncated), (files, context) in zip(batch, waiting.popleft()):
            # A sample whose labels were all cut off teaches nothing: count it, never hide it.
            if all(label == -100 for label in sample.labels[1:]):
                stats.no_labels += 1
                continue
            if context and sample.input_ids.count(context_id) != context:
                stats.images_cut += 1  # an image cut in half by cutoff_len cannot be fed; raise cutoff_len
                continue
            if files:
                sample = dataclasses.replace(sample, images=files)
            stats.truncated += truncated
            stats.samples += 1
            stats.tokens += len(sample.input_ids)
            yield sample
            kept += 1
            # Counted per pass, not from `stats`: a stream walks the source again every epoch, and its
            # stats add up over the epochs (a resumed run's replay must stop where the first pass did).
            if cfg.max_samples is not None and kept >= cfg.max_samples:
                return


def source_fingerprint(source: DatasetSource, cfg: DataConfig, tokenizer, images: ImageInputs | None = None) -> str:
    return fingerprint(kind="sft", files=file_signature(source.path, cfg.cache_fingerprint),
                       formatting=source.formatting, columns=source.columns, template=cfg.template,
                       images=images.signature if images else None,
                       template_code=function_signature(template_of(cfg)), tokenizer=tokenizer_signature(tokenizer),
                       cutoff_len=cfg.cutoff_len, train_on_prompt=cfg.train_on_prompt,
                       max_samples=cfg.max_samples, skip_bad_rows=cfg.skip_bad_rows)


def open_cached(path: Path, cfg: DataConfig, build: bool) -> tuple[TokenStore, DataStats, bool] | None:
    """The store cached at `path` (with the stats of the run that wrote it), or None when this
    process is to build it. A rank that does not build (build=False) only ever opens."""
    if path.exists() and not (build and cfg.overwrite_cache):
        store = TokenStore(path)
        return store, DataStats(**store.meta["stats"]), True
    if not build:
        raise DataError(f"{path}: the tokenised cache was not built by the first rank of this node")
    return None


def build_source_store(source: DatasetSource, cfg: DataConfig, tokenizer, build: bool = True,
                       images: ImageInputs | None = None) -> tuple[TokenStore, DataStats, bool]:
    """(store, stats, came_from_cache). With build=False only an existing store is opened (other ranks)."""
    path = cache_root(cfg) / f"{source.name}-{source_fingerprint(source, cfg, tokenizer, images)}"
    if (cached := open_cached(path, cfg, build)) is not None:
        return cached
    stats = DataStats()
    errors = RowErrors(cfg.skip_bad_rows)
    with TokenStoreWriter(path, len(tokenizer), with_mask=True) as writer:
        for sample in iter_samples(source, cfg, tokenizer, stats, errors, images):
            writer.add(sample.input_ids, [label != -100 for label in sample.labels], sample.images)
        stats.bad_rows = errors.count
        writer.commit({"stats": asdict(stats), "source": str(source.path)}, replace=cfg.overwrite_cache)
    return TokenStore(path), stats, False


def build_sft_samples(cfg: DataConfig, tokenizer, sources: Optional[list[DatasetSource]] = None
                      ) -> list[TokenizedSample]:
    """All samples of all sources in memory, concatenated (small data, tests, inspection)."""
    from .dataset_info import resolve_sources

    samples: list[TokenizedSample] = []
    stats = DataStats()
    for source in sources or resolve_sources(cfg):
        one = DataStats()
        errors = RowErrors(cfg.skip_bad_rows)
        samples += iter_samples(source, cfg, tokenizer, one, errors)
        one.bad_rows = errors.count
        stats += one
    if not samples:
        raise ConfigError(f"data.dataset: no trainable samples in {cfg.dataset!r} ({stats.summary()})")
    return samples
