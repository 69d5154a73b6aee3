"""Video size buckets: clips of different sizes and lengths in one run (`task.buckets` online, `--buckets` for
the feature extraction), each written "FRAMESxHEIGHTxWIDTH", e.g. ["81x480x832", "81x832x480", "49x480x832"].

Each clip goes to the bucket whose aspect ratio is nearest its own (the centre crop then cuts least), among
those whose frames it has (FRAMES frames `stride` apart); a tie goes to the longer bucket, then the larger.
A clip no bucket fits is a bad row (named, or skipped and counted with data.skip_bad_rows). The rows carry
their bucket as their group, so the loader makes every step from one bucket (shardzoo.data.loader), the
same steps for any split over ranks; `shardzoo plan` sizes a run by its largest bucket."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from shardzoo.errors import ConfigError, DataError


@dataclass(frozen=True)
class Bucket:
    frames: int
    height: int
    width: int

    def __str__(self) -> str:
        return f"{self.frames}x{self.height}x{self.width}"

    def source_frames(self, stride: int) -> int:
        """Frames a source clip needs for this bucket: `frames` of them `stride` apart."""
        return (self.frames - 1) * stride + 1


def parse_buckets(specs: Sequence[str], key: str = "task.buckets") -> list[Bucket]:
    """["81x480x832", ...] -> buckets; ConfigError naming the entry for a malformed or repeated one."""
    buckets = []
    for i, spec in enumerate(specs):
        m = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*x\s*(\d+)\s*", str(spec))
        if not m:
            raise ConfigError(f"{key}[{i}]: {spec!r} is not FRAMESxHEIGHTxWIDTH, e.g. 81x480x832")
        bucket = Bucket(*(int(g) for g in m.groups()))
        if bucket.frames % 4 != 1 or min(bucket.height, bucket.width) < 1:
            raise ConfigError(f"{key}[{i}]: {spec}: frames must be 4n + 1 (the Wan VAE's rule: 81, 49, 17, 1) and the "
                              "sizes positive")
        if bucket in buckets:
            raise ConfigError(f"{key}[{i}]: {spec} is listed twice")
        buckets.append(bucket)
    if not buckets:
        raise ConfigError(f"{key}: empty; list the sizes, e.g. [81x480x832, 81x832x480], or remove it")
    return buckets


def pick_bucket(frames: int, height: int, width: int, buckets: Sequence[Bucket], stride: int) -> Optional[int]:
    """The bucket index for a source clip of `frames` frames of height x width; None when it fits none."""
    fits = [i for i, b in enumerate(buckets) if b.source_frames(stride) <= frames]
    if not fits:
        return None
    aspect = math.log(width / height)
    return min(fits, key=lambda i: (abs(math.log(buckets[i].width / buckets[i].height) - aspect),
                                    -buckets[i].frames, -buckets[i].height * buckets[i].width, i))


def assign_buckets(rows: list, buckets: Sequence[Bucket], stride: int,
                   skip_bad_rows: bool = False) -> tuple[list, list[int], int]:
    """(the rows that fit a bucket, their bucket indices, rows skipped): each row's video probed for its
    frame count and size (headers only). A row that fits no bucket raises DataError naming it, unless
    skip_bad_rows."""
    from .video import probe_video

    kept, assigned, skipped = [], [], 0
    for row in rows:
        frames, height, width = probe_video(row.video)
        index = pick_bucket(frames, height, width, buckets, stride)
        if index is None:
            if skip_bad_rows:
                skipped += 1
                continue
            shortest = min(buckets, key=lambda b: b.frames)
            raise DataError(f"{row.where}: its video has {frames} frames, fewer than any bucket needs (the shortest, "
                            f"{shortest}, needs {shortest.source_frames(stride)} at frame_stride {stride}); add a "
                            "shorter bucket, or set data.skip_bad_rows: true")
        kept.append(row)
        assigned.append(index)
    return kept, assigned, skipped


def clip_rows(source, o, skip_bad_rows: bool, tokens: list[int], max_samples: Optional[int] = None):
    """(ClipRows of a video source at the run's sizes, bad rows skipped): with buckets each row at its own."""
    from .rows import read_video_rows
    from .task import sizes_of
    from .video_batches import ClipRows

    found, skipped = read_video_rows(source.path, source.columns, skip_bad_rows)
    found = found[:max_samples]
    if o.buckets is None:
        return ClipRows(found, o, sizes_of(o), tokens), skipped
    kept, groups, misfits = assign_buckets(found, sizes_of(o), o.frame_stride, skip_bad_rows)
    return ClipRows(kept, o, sizes_of(o), tokens, groups), skipped + misfits


def bucket_counts(rows, shapes: list, tokens: list[int]) -> str:
    """"bucket latents: rows (tokens), ..." for the data line; empty with one size."""
    groups = getattr(rows, "groups", None)
    if groups is None:
        return ""
    counts = np.bincount(np.asarray(groups), minlength=len(shapes))
    return ", ".join(f"{'x'.join(map(str, s[1:]))}: {n} ({t} tokens)" for s, n, t in zip(shapes, counts, tokens))
