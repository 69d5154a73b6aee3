"""One run per output_dir: rank 0 holds an exclusive lock on `<output_dir>/.shardzoo-run.lock` for the
run's life, with the holder written inside (host, pid, start time).

A second run on the same folder (a requeued job while the old one still lives) stops at once with a
ConfigError naming the holder, before it builds data or model. The kernel drops the lock when its
process dies however it dies, so a lock file left behind is taken over, with a warning naming the
run that left it. On a shared filesystem the lock only holds where the filesystem honours flock
across nodes (NFSv4 and Lustre mounted with `flock` do; NFSv3 without lockd and Lustre's `noflock`
do not): there, two runs on one output_dir from different nodes are not stopped — give each job its
own output_dir.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path
from typing import Optional

from ..errors import ConfigError

log = logging.getLogger(__name__)

LOCK_NAME = ".shardzoo-run.lock"


def check_output_dir(output_dir: Path) -> None:
    """output_dir exists as a writable folder (created if missing), or ConfigError naming the fix."""
    key = "training.output_dir"
    if output_dir.exists() and not output_dir.is_dir():
        raise ConfigError(f"{key}: {output_dir} is a file, not a folder; point {key} at a folder")
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{key}: cannot create {output_dir} ({exc.strerror}); choose a writable folder") from None
    if not os.access(output_dir, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}: {output_dir} is not writable by this user; choose a writable folder or fix its "
                          "permissions")


def _holder(text: str) -> Optional[dict]:
    try:
        holder = json.loads(text)
    except json.JSONDecodeError:
        return None
    return holder if isinstance(holder, dict) else None


def _describe(holder: dict) -> str:
    return f"host {holder.get('host')}, pid {holder.get('pid')}, started {holder.get('started')}"


class RunLock:
    """Held by rank 0 from `acquire()` to `release()` (also released by the process's death)."""

    def __init__(self, output_dir: Path):
        self.path = output_dir / LOCK_NAME
        self._fd: Optional[int] = None

    def acquire(self) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(self.path.read_text()) or {}
            os.close(fd)
            raise ConfigError(f"training.output_dir: {self.path.parent} is in use by another run "
                              f"({_describe(holder)}); wait for it to end or stop it, or give this run another "
                              "output_dir") from None
        previous = _holder(os.pread(fd, 1 << 16, 0).decode(errors="replace"))
        if previous:
            gone = "that process is gone" if previous.get("host") == socket.gethostname() else \
                "on another node: if that run still lives, the filesystem does not share locks; stop one of them"
            log.warning("taking over the run lock of %s left by %s (%s)", self.path.parent, _describe(previous), gone)
        me = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        os.fsync(fd)
        self._fd = fd

    def release(self) -> None:
        if self._fd is None:
            return
        os.ftruncate(self._fd, 0)  # an empty lock file: the run ended cleanly
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
