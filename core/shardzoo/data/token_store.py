"""Tokenised documents on disk, read back through memory maps.

A store is a folder:
    meta.json             dtype, shard token counts, document count, stats of the run that wrote it
    tokens_00000.bin ...  the token ids of all documents, concatenated, in shards
    mask_00000.bin ...    (optional) one uint8 per token: 1 = a trained label (SFT), absent for pretraining
    offsets.bin           int64 [documents + 1]: where each document starts in the concatenation
    images.json           (optional) {document: its image files, in the order of its image tokens}

It is written into a temporary folder and renamed into place only when complete, so a crash
never leaves a half store that a later run would take for a cache. Reading maps the shards: the
operating system pages tokens in and out, so a corpus larger than RAM is read with flat memory.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import socket
import uuid
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import DataError

log = logging.getLogger(__name__)

META = "meta.json"
FORMAT_VERSION = 2
"""2: offsets stream to offsets.bin (1 held them in offsets.npy). Part of the cache fingerprint, so a
store in an older format is rebuilt instead of misread."""
DEFAULT_SHARD_TOKENS = 1 << 28


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.uint32)


TMP_MARK = ".tmp-"
_OWNER = re.compile(re.escape(TMP_MARK) + r"(?P<host>.+)-(?P<pid>\d+)-[0-9a-f]{8}\Z")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_orphans(folder: Path) -> list[Path]:
    """Delete the unfinished stores of writers on this host whose process is gone."""
    removed = []
    for path in folder.glob(f".*{TMP_MARK}*") if folder.is_dir() else ():
        owner = _OWNER.search(path.name)
        if owner and owner["host"] == socket.gethostname() and not _alive(int(owner["pid"])):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
            log.info("removed %s, left by a tokenising process that is gone", path)
    return removed


class TokenStoreWriter:
    """Appends documents; `commit()` publishes the store atomically, leaving the context without it discards."""

    def __init__(self, path: Path, vocab_size: int, with_mask: bool, shard_tokens: int = DEFAULT_SHARD_TOKENS):
        self.path = Path(path)
        remove_orphans(self.path.parent)
        # The owner in the name: a writer killed mid-way (SIGTERM, kill -9) is found and cleared later.
        self.tmp = self.path.with_name(f".{self.path.name}{TMP_MARK}{socket.gethostname()}-{os.getpid()}-"
                                       f"{uuid.uuid4().hex[:8]}")
        self.tmp.mkdir(parents=True)
        self.dtype = token_dtype(vocab_size)
        self.with_mask = with_mask
        self.shard_tokens = shard_tokens
        self.shards: list[int] = []
        # Offsets go straight to disk: a corpus of a billion documents must not grow a list in memory.
        self._offsets = open(self.tmp / "offsets.bin", "wb")
        self._offsets.write(np.int64(0).tobytes())
        self.num_documents = 0
        self.num_tokens = 0
        self._tokens = self._mask = None
        self._in_shard = 0
        self._images: dict[int, list[str]] = {}  # sparse: text corpora hold none

    def _open_shard(self) -> None:
        self._close_shard()
        i = len(self.shards)
        self._tokens = open(self.tmp / f"tokens_{i:05d}.bin", "wb")
        self._mask = open(self.tmp / f"mask_{i:05d}.bin", "wb") if self.with_mask else None
        self.shards.append(0)
        self._in_shard = 0

    def _close_shard(self) -> None:
        if self._tokens is not None:
            self._tokens.close()
            if self._mask is not None:
                self._mask.close()
            self.shards[-1] = self._in_shard

    def add(self, ids, mask=None, images: tuple[str, ...] = ()) -> None:
        # A document never straddles two shards (unless it is longer than a shard on its own).
        if self._tokens is None or (self._in_shard and self._in_shard + len(ids) > self.shard_tokens):
            self._open_shard()
        self._tokens.write(np.asarray(ids, dtype=self.dtype).tobytes())
        if self.with_mask:
            self._mask.write(np.asarray(mask, dtype=np.uint8).tobytes())
        self._in_shard += len(ids)
        self.num_tokens += len(ids)
        self.num_documents += 1
        self._offsets.write(np.int64(self.num_tokens).tobytes())
        if images:
            self._images[self.num_documents - 1] = list(images)

    def commit(self, info: dict, replace: bool = False) -> None:
        """Publish; `replace` first removes an existing store at the path (data.overwrite_cache)."""
        if replace and self.path.exists():
            shutil.rmtree(self.path)
        if self._tokens is None:
            self._open_shard()
        self._close_shard()
        self._offsets.close()
        meta = {"format_version": FORMAT_VERSION, "dtype": self.dtype.name, "shards": self.shards,
                "with_mask": self.with_mask, "documents": self.num_documents, "tokens": self.num_tokens, **info}
        if self._images:
            (self.tmp / "images.json").write_text(json.dumps(self._images))
        (self.tmp / META).write_text(json.dumps(meta, indent=1))
        try:
            os.replace(self.tmp, self.path)
        except OSError:
            # Another process published the same fingerprint first; its store is identical.
            if not (self.path / META).is_file():
                raise
            shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "TokenStoreWriter":
        return self

    def __exit__(self, exc_type, *_) -> None:
        if self._tokens is not None and not self._tokens.closed:
            self._close_shard()
        self._offsets.close()
        if self.tmp.exists():
            shutil.rmtree(self.tmp, ignore_errors=True)


class TokenStore:
    """Read side. Pickles by path, so data-loader workers reopen the maps instead of copying them."""

    def __init__(self, path: Path):
        self.path = Path(path)
        meta_path = self.path / META
        if not meta_path.is_file():
            raise DataError(f"{self.path}: not a token store (no {META})")
        self.meta = json.loads(meta_path.read_text())
        if self.meta.get("format_version") != FORMAT_VERSION:
            raise DataError(f"{self.path}: token store format {self.meta.get('format_version')} is not "
                             f"{FORMAT_VERSION}; delete the folder (or set data.overwrite_cache: true)")
        self.offsets = self._map("offsets.bin", np.int64, self.meta["documents"] + 1)
        dtype = np.dtype(self.meta["dtype"])
        sizes = self.meta["shards"]
        self._tokens = [self._map(f"tokens_{i:05d}.bin", dtype, n) for i, n in enumerate(sizes)]
        self._mask = [self._map(f"mask_{i:05d}.bin", np.uint8, n) for i, n in enumerate(sizes)] \
            if self.meta["with_mask"] else None
        self._starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        images = self.path / "images.json"
        self._images = json.loads(images.read_text()) if images.is_file() else {}

    def document_images(self, i: int) -> tuple[str, ...]:
        """The image files of document i (in the order of its image tokens); () for text."""
        return tuple(self._images.get(str(i), ()))

    def _map(self, name: str, dtype, n: int) -> np.ndarray:
        if n == 0:
            return np.zeros(0, dtype=dtype)
        path = self.path / name
        expected = n * np.dtype(dtype).itemsize
        if not path.is_file() or path.stat().st_size != expected:
            raise DataError(f"{path}: missing or truncated (expected {expected} bytes); delete {self.path} or set "
                             "data.overwrite_cache: true to rebuild it")
        return np.memmap(path, dtype=dtype, mode="r", shape=(n,))

    def __getstate__(self) -> dict:
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"])

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def num_tokens(self) -> int:
        return int(self._starts[-1])

    def lengths(self) -> np.ndarray:
        return np.diff(np.asarray(self.offsets))

    def _span(self, arrays: list[np.ndarray], start: int, end: int) -> np.ndarray:
        if start >= end:
            return np.zeros(0, dtype=np.int64)
        first = int(np.searchsorted(self._starts, start, side="right")) - 1
        parts = []
        while start < end:
            local = start - self._starts[first]
            take = min(end - start, len(arrays[first]) - local)
            parts.append(arrays[first][local:local + take])
            start += take
            first += 1
        return parts[0].astype(np.int64) if len(parts) == 1 else np.concatenate(parts).astype(np.int64)

    def tokens(self, start: int, end: int) -> np.ndarray:
        """Tokens [start, end) of the concatenation, as int64, across shard boundaries."""
        return self._span(self._tokens, start, end)

    def document(self, i: int) -> tuple[np.ndarray, Optional[np.ndarray]]:
        start, end = int(self.offsets[i]), int(self.offsets[i + 1])
        mask = self._span(self._mask, start, end).astype(bool) if self._mask is not None else None
        return self.tokens(start, end), mask
