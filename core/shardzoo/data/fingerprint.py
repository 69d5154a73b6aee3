"""Fingerprints that key the tokenised-data cache: everything that changes the tokens is in them."""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from pathlib import Path
from typing import Callable

from ..config import DataConfig, resolve_path
from .readers import data_files
from .token_store import FORMAT_VERSION


def cache_root(cfg: DataConfig) -> Path:
    if cfg.cache_dir is not None:
        return resolve_path(cfg.cache_dir)
    return resolve_path(os.environ.get("SHARDZOO_CACHE_DIR", "~/.cache/shardzoo/data"))


def file_signature(path: Path, mode: str = "stat") -> list:
    """Every data file by path, size and modification time (`stat`: cheap; a copy or a touch makes a
    new cache), or by name, size and SHA-256 of its bytes (`content`: reads the corpus once per run;
    the cache survives copies to another path or node and catches edits that keep size and mtime)."""
    out = []
    for f in data_files(path):
        st = f.stat()
        if mode == "content":
            out.append([f.name, st.st_size, _sha256(f)])
        else:
            out.append([str(f.resolve()), st.st_size, st.st_mtime_ns])
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            digest.update(chunk)
    return digest.hexdigest()


def tokenizer_signature(tokenizer) -> str:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    body = backend.to_str() if backend is not None else json.dumps(tokenizer.get_vocab(), sort_keys=True)
    body += json.dumps({"special": tokenizer.special_tokens_map, "len": len(tokenizer)}, sort_keys=True, default=str)
    return hashlib.sha256(body.encode()).hexdigest()


def function_signature(fn: Callable) -> str:
    """The source of the module defining fn (a template and the helpers it calls): editing it
    invalidates the caches it produced."""
    return hashlib.sha256(inspect.getsource(inspect.getmodule(fn)).encode()).hexdigest()


def fingerprint(**parts) -> str:
    parts["format_version"] = FORMAT_VERSION
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]
