"""Rows out of data files: JSON (a list), JSONL, Parquet, CSV, or a folder of them.

Every row comes with its location ('file:line' for JSONL and CSV, 'file[row N]' for JSON and
Parquet) so that any later error names the exact row. Files are read lazily, a batch at a time,
so a file larger than memory can be streamed.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path
from typing import Iterator, Optional

from ..errors import DataError

log = logging.getLogger(__name__)

SUFFIXES = (".json", ".jsonl", ".parquet", ".csv")


class RowErrors:
    """What happens to a malformed row: raise (default) or skip it and count it (skip_bad_rows)."""

    SHOWN = 5

    def __init__(self, skip: bool):
        self.skip = skip
        self.count = 0

    def handle(self, error: DataError) -> None:
        if not self.skip:
            raise error
        self.count += 1
        if self.count <= self.SHOWN:
            log.warning("data: skipped bad row (%s)%s", error,
                        "; further skips are only counted" if self.count == self.SHOWN else "")


def data_files(path: Path) -> list[Path]:
    """The file itself, or the supported files directly inside a folder (sorted by name)."""
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in SUFFIXES)
        if not files:
            raise DataError(f"{path}: the folder has no data files ({', '.join(SUFFIXES)})")
        return files
    if path.suffix not in SUFFIXES:
        raise DataError(f"{path}: unsupported file type {path.suffix!r}; use one of {', '.join(SUFFIXES)}")
    return [path]


def _lines(f, max_bytes: Optional[int]) -> Iterator[tuple[int, Optional[bytes], int]]:
    """(line number, the line or None when it is longer than max_bytes, its size): a line over the bound
    is skipped a block at a time, never held whole."""
    lineno = 0
    while True:
        line = f.readline(max_bytes + 1) if max_bytes else f.readline()
        if not line:
            return
        lineno += 1
        if max_bytes and len(line) > max_bytes and not line.endswith(b"\n"):
            size, line = len(line), None
            while (rest := f.readline(max_bytes + 1)) and not rest.endswith(b"\n"):
                size += len(rest)
            yield lineno, None, size + len(rest)
            continue
        yield lineno, line, len(line)


def _jsonl(path: Path, errors: RowErrors, max_row_bytes: Optional[int]) -> Iterator[tuple[str, object]]:
    with open(path, "rb") as f:
        for lineno, line, size in _lines(f, max_row_bytes):
            where = f"{path}:{lineno}"
            if line is None:
                errors.handle(DataError(f"{where}: the row is {size / 2**20:.1f} MiB, over the "
                                        f"{max_row_bytes / 2**20:.1f} MiB a row may take (data.cutoff_len x 4 KiB: "
                                        "nothing past cutoff_len tokens is trained); shorten the row or set "
                                        "data.skip_bad_rows: true"))
                continue
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                errors.handle(DataError(f"{where}: not valid UTF-8 (byte {exc.start} of the row); fix the file's "
                                        "encoding or set data.skip_bad_rows: true"))
                continue
            if not text.strip():
                continue
            try:
                yield where, json.loads(text)
            except json.JSONDecodeError as exc:
                errors.handle(DataError(f"{where}: invalid JSON: {exc}"))


def _decode_error(path: Path, exc: UnicodeDecodeError) -> DataError:
    return DataError(f"{path}: not valid UTF-8 (byte {exc.start} of the file); fix the file's encoding")


def _json(path: Path, errors: RowErrors) -> Iterator[tuple[str, object]]:
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise _decode_error(path, exc) from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: invalid JSON: {exc} (a .json file holds one list of rows; use .jsonl for "
                        "one row per line)") from None
    if not isinstance(rows, list):
        raise DataError(f"{path}: expected a JSON list of rows, got {type(rows).__name__}")
    for i, row in enumerate(rows):
        yield f"{path}[row {i}]", row


def _parquet(path: Path, columns: Optional[list[str]], batch_rows: int = 1024) -> Iterator[tuple[str, object]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a damaged file
        raise DataError(f"{path}: not a readable Parquet file: {exc}") from None
    if columns is not None:
        missing = [c for c in columns if c not in pf.schema_arrow.names]
        if missing:
            raise DataError(f"{path}: missing column(s) {missing}; available: {', '.join(pf.schema_arrow.names)}")
    index = 0
    for batch in pf.iter_batches(batch_size=batch_rows, columns=columns):
        for row in batch.to_pylist():
            yield f"{path}[row {index}]", row
            index += 1


def _csv(path: Path, errors: RowErrors) -> Iterator[tuple[str, object]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        while True:
            try:
                row = next(reader)
            except StopIteration:
                return
            except UnicodeDecodeError:
                raise DataError(f"{path}: not valid UTF-8 after line {reader.line_num}; fix the file's "
                                "encoding") from None
            where = f"{path}:{reader.line_num}"
            if None in row or None in row.values():  # more or fewer fields than the header
                errors.handle(DataError(f"{where}: {len(row) - (None in row)} header columns but a different "
                                        f"number of fields in this row"))
                continue
            yield where, row


def read_rows(path: Path, errors: RowErrors, columns: Optional[list[str]] = None,
              max_row_bytes: Optional[int] = None) -> Iterator[tuple[str, object]]:
    """(location, row) for every row of a file or folder. `columns` limits Parquet reads to those columns;
    a JSONL row over `max_row_bytes` is a bad row, read a block at a time and never held whole."""
    for file in data_files(path):
        if file.suffix == ".jsonl":
            yield from _jsonl(file, errors, max_row_bytes)
        elif file.suffix == ".json":
            yield from _json(file, errors)
        elif file.suffix == ".parquet":
            yield from _parquet(file, columns)
        else:
            yield from _csv(file, errors)
