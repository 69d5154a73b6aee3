"""Video-caption rows: {"video": a folder of frames or a video file, "caption": text}, in JSON, JSONL,
Parquet or CSV files (core's readers). A relative video path resolves against its data file's folder.
A malformed row names its file and row, and is skipped and counted with data.skip_bad_rows."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from shardzoo.data.readers import DataError, RowErrors, data_files, read_rows

COLUMNS = {"video": "video", "caption": "caption"}


@dataclass(frozen=True)
class VideoRow:
    video: Path
    caption: str
    where: str
    """file and row, for messages."""


def read_video_rows(path: Path, columns: Optional[dict] = None, skip_bad_rows: bool = False) -> tuple[list[VideoRow],
                                                                                                        int]:
    """(rows, skipped bad rows). `columns` maps our names (video, caption) to the file's column names."""
    names = {**COLUMNS, **(columns or {})}
    unknown = sorted(set(names) - set(COLUMNS))
    if unknown:
        raise DataError(f"{path}: unknown column mapping(s) {unknown}; video rows have {sorted(COLUMNS)}")
    errors = RowErrors(skip_bad_rows)
    rows = []
    for file in data_files(Path(path)):
        for where, row in read_rows(file, errors):
            try:
                rows.append(_video_row(row, where, file.parent, names))
            except DataError as exc:
                errors.handle(exc)
    if not rows:
        skipped = f" ({errors.count} bad rows skipped)" if errors.count else ""
        raise DataError(f"{path}: no usable video rows{skipped}")
    return rows, errors.count


def _video_row(row: object, where: str, base: Path, names: dict) -> VideoRow:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected an object with {sorted(names.values())}, got {type(row).__name__}")
    values = {}
    for ours, theirs in names.items():
        value = row.get(theirs)
        if not isinstance(value, str) or not value.strip():
            raise DataError(f"{where}: column {theirs!r} ({ours}) is missing or not a non-empty text")
        values[ours] = value
    video = Path(values["video"])
    video = video if video.is_absolute() else base / video
    if not video.exists():
        raise DataError(f"{where}: video {video} does not exist (relative paths resolve against {base})")
    return VideoRow(video, values["caption"], where)
