"""Supervised fine-tuning data: sources -> tokenised samples (in memory; the data issue adds
caching, streaming and packing)."""

from __future__ import annotations

import logging

from ..config import ConfigError, DataConfig
from .dataset_info import resolve_sources
from .formats import iter_conversations
from .templates import TEMPLATES, TokenizedSample, tokenize_conversation

log = logging.getLogger(__name__)


def load_tokenizer(path: str, trust_remote_code: bool = False):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if tok.pad_token_id is None and tok.eos_token_id is None:
        raise ConfigError(f"model.tokenizer_name_or_path: tokenizer at {path} has neither a pad nor an eos token")
    return tok


def build_sft_samples(cfg: DataConfig, tokenizer) -> list[TokenizedSample]:
    if cfg.template not in TEMPLATES:
        raise ConfigError(f"data.template: {cfg.template!r} is unknown; choose one of {', '.join(TEMPLATES)}")
    render = TEMPLATES[cfg.template]
    eos = tokenizer.eos_token or ""
    samples: list[TokenizedSample] = []
    dropped = 0
    for source in resolve_sources(cfg):
        for _, messages in iter_conversations(source):
            sample = tokenize_conversation(render(messages, eos), tokenizer, cfg.cutoff_len, cfg.train_on_prompt)
            # A sample whose labels were all cut off teaches nothing; count it, never hide it.
            if all(label == -100 for label in sample.labels[1:]):
                dropped += 1
                continue
            samples.append(sample)
            if cfg.max_samples is not None and len(samples) >= cfg.max_samples:
                break
        if cfg.max_samples is not None and len(samples) >= cfg.max_samples:
            break
    if dropped:
        log.warning("data: dropped %d sample(s) with no trainable token left after cutoff_len=%d",
                    dropped, cfg.cutoff_len)
    if not samples:
        raise ConfigError(f"data.dataset: no trainable samples in {cfg.dataset!r} "
                          f"(dropped {dropped} by cutoff_len={cfg.cutoff_len})")
    return samples
