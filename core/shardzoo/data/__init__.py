"""Data: dataset registry, row formats, chat templates, tokenisation, data-parallel batches."""

from .dataset_info import DatasetSource, resolve_sources
from .formats import DataError, iter_conversations
from .loader import Batch, StepBatches, collate
from .sft import build_sft_samples, load_tokenizer
from .templates import TEMPLATES, TokenizedSample, tokenize_conversation

__all__ = ["DatasetSource", "resolve_sources", "DataError", "iter_conversations", "Batch", "StepBatches",
           "collate", "build_sft_samples", "load_tokenizer", "TEMPLATES", "TokenizedSample",
           "tokenize_conversation"]
