"""Pretraining data (data_manager_type: mg): raw text -> token shards on disk -> fixed-length sequences.

The corpus is read a batch of rows at a time (Parquet reads only the text column), tokenised in
batches (in worker processes with preprocessing_num_workers), each document ended with eos
(append_eod), and appended to memory-mapped shards. Neither preprocessing nor training holds the
corpus in memory; the shards are cached by fingerprint like SFT data.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import asdict
from typing import Iterator

from ..config import ConfigError, DataConfig
from .dataset_info import DatasetSource
from .fingerprint import cache_root, file_signature, fingerprint, tokenizer_signature
from .readers import DataError, RowErrors, read_rows
from .sft import DataStats, batched, open_cached
from .token_store import DEFAULT_SHARD_TOKENS, TokenStore, TokenStoreWriter
from .workers import map_batches

log = logging.getLogger(__name__)


def _text_column(source: DatasetSource, cfg: DataConfig) -> str:
    return source.columns.get("text", cfg.text_column)


def iter_texts(source: DatasetSource, cfg: DataConfig, stats: DataStats, errors: RowErrors) -> Iterator[str]:
    column = _text_column(source, cfg)
    for where, row in read_rows(source.path, errors, columns=[column]):
        try:
            if not isinstance(row, dict):
                raise DataError(f"{where}: a row must be an object with named columns, got {type(row).__name__}")
            if column not in row:
                raise DataError(f"{where}: missing column {column!r}; the row has: {', '.join(map(str, row))}. "
                                "Set data.text_column (or the dataset's columns: {\"text\": ...})")
            text = row[column]
            if not isinstance(text, str):
                raise DataError(f"{where}: column {column!r} must be a string, got {type(text).__name__}")
        except DataError as exc:
            errors.handle(exc)
            continue
        stats.rows += 1
        if not text.strip():
            stats.empty_texts += 1
            continue
        yield text


def encode_texts(texts: list[str], tokenizer, eod: int | None) -> list[list[int]]:
    ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [x + [eod] for x in ids] if eod is not None else ids


def pretrain_fingerprint(sources: list[DatasetSource], cfg: DataConfig, tokenizer) -> str:
    return fingerprint(kind="mg", files=[file_signature(s.path, cfg.cache_fingerprint) for s in sources],
                       columns=[_text_column(s, cfg) for s in sources], tokenizer=tokenizer_signature(tokenizer),
                       append_eod=cfg.append_eod, max_samples=cfg.max_samples, skip_bad_rows=cfg.skip_bad_rows)


def build_pretrain_store(sources: list[DatasetSource], cfg: DataConfig, tokenizer, build: bool = True,
                         shard_tokens: int = DEFAULT_SHARD_TOKENS) -> tuple[TokenStore, DataStats, bool]:
    """All sources' documents, in order, as one store: (store, stats, came_from_cache)."""
    names = "+".join(s.name for s in sources)[:80]
    path = cache_root(cfg) / f"mg-{names}-{pretrain_fingerprint(sources, cfg, tokenizer)}"
    if (cached := open_cached(path, cfg, build)) is not None:
        return cached
    eod = None
    if cfg.append_eod:
        eod = tokenizer.eos_token_id
        if eod is None:
            raise ConfigError("data.append_eod: the tokenizer has no eos token; set data.append_eod: false")
    stats = DataStats()
    with TokenStoreWriter(path, len(tokenizer), with_mask=False, shard_tokens=shard_tokens) as writer:
        for source in sources:
            errors = RowErrors(cfg.skip_bad_rows)
            one = DataStats()
            texts = itertools.islice(iter_texts(source, cfg, one, errors), cfg.max_samples)
            for batch in map_batches(encode_texts, batched(texts, cfg.preprocessing_batch_size), tokenizer,
                                     cfg.preprocessing_num_workers or 1, eod=eod):
                for ids in batch:
                    writer.add(ids)
                    one.samples += 1
                    one.tokens += len(ids)
            one.bad_rows = errors.count
            stats += one
        writer.commit({"stats": asdict(stats), "sources": [str(s.path) for s in sources]},
                      replace=cfg.overwrite_cache)
    return TokenStore(path), stats, False
