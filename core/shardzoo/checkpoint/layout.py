"""Where checkpoints live in output_dir and which of them are complete.

    <output_dir>/checkpoint-<step>/        complete: published by one rename after every file is written
    <output_dir>/.tmp-checkpoint-<step>/   a save in progress (or one killed mid-way): never resumed from
    <output_dir>/latest                    name of the last published checkpoint, rewritten atomically last

A published directory is complete when its manifest exists (it is the last file written before
the rename). `latest` names the run's timeline: `resume: auto` continues from it while it names a
complete checkpoint, so checkpoints of an abandoned timeline (newer numbers, left by a rollback) are
never picked by their number. Symbolic links named like checkpoints are not ours: never resumed
from, never pruned.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from pathlib import Path
from typing import Optional

PREFIX = "checkpoint-"
TMP_PREFIX = ".tmp-"
DELETING_PREFIX = ".deleting-"
LATEST = "latest"
MANIFEST = "manifest.json"
_NAME = re.compile(re.escape(PREFIX) + r"(\d+)")


def checkpoint_name(step: int) -> str:
    return f"{PREFIX}{step}"


def step_of(path: Path) -> Optional[int]:
    m = _NAME.fullmatch(path.name)
    return int(m.group(1)) if m else None


def published(output_dir: Path) -> list[Path]:
    """checkpoint-<step> directories, oldest first."""
    if not output_dir.is_dir():
        return []
    dirs = [p for p in output_dir.iterdir() if p.is_dir() and not p.is_symlink() and step_of(p) is not None]
    return sorted(dirs, key=step_of)


def linked(output_dir: Path) -> list[Path]:
    """Symbolic links named like checkpoints (copied or linked in by hand): reported, never used."""
    if not output_dir.is_dir():
        return []
    return sorted(p for p in output_dir.iterdir() if p.is_symlink() and step_of(p) is not None)


def complete(output_dir: Path) -> list[Path]:
    return [p for p in published(output_dir) if (p / MANIFEST).is_file()]


def incomplete(output_dir: Path) -> list[Path]:
    """Interrupted saves and published directories without a manifest (copied partially by hand)."""
    if not output_dir.is_dir():
        return []
    tmp = [p for p in output_dir.iterdir() if p.is_dir() and p.name.startswith(TMP_PREFIX + PREFIX)]
    return sorted(tmp) + [p for p in published(output_dir) if not (p / MANIFEST).is_file()]


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str) -> None:
    """Write a small file so readers see the old or the new content, never a torn one."""
    tmp = path.with_name(f"{TMP_PREFIX}{path.name}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def read_latest(output_dir: Path) -> Optional[str]:
    path = output_dir / LATEST
    return path.read_text().strip() if path.is_file() else None


ABANDONED_PREFIX = "abandoned-"


def set_aside(path: Path) -> Path:
    """Rename a checkpoint of an abandoned timeline so nothing resumes from it or prunes it; kept."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{ABANDONED_PREFIX}{stamp}-{path.name}")
    n = 1
    while target.exists():
        n += 1
        target = path.with_name(f"{ABANDONED_PREFIX}{stamp}-{n}-{path.name}")
    os.replace(path, target)
    return target


def remove_tree(path: Path) -> None:
    """Delete a checkpoint so a crash half-way never leaves a directory that looks published."""
    doomed = path.with_name(f"{DELETING_PREFIX}{path.name}")
    os.replace(path, doomed)
    shutil.rmtree(doomed)


def prune(output_dir: Path, keep: Optional[int], protect: Path) -> list[Path]:
    """Delete the oldest complete checkpoints beyond `keep`; never `protect` (the one just saved)."""
    if keep is None:
        return []
    doomed = [p for p in complete(output_dir) if p != protect][: max(0, len(complete(output_dir)) - keep)]
    for path in doomed:
        remove_tree(path)
    return doomed
