"""Named points where a fault test kills the process, to prove a crash there loses nothing.

SHARDZOO_FAILPOINT=<name>:<step> makes every rank that reaches point <name> while saving step
<step> send itself SIGKILL (no handlers, no cleanup: what a node failure or OOM killer does).
Unset in normal runs; the check is one environment lookup per save.
"""

from __future__ import annotations

import os
import signal

ENV = "SHARDZOO_FAILPOINT"
POINTS = ("save.written", "save.published")
"""save.written: every file is in the temporary directory, nothing is published yet.
save.published: the checkpoint directory is renamed into place, `latest` is not updated yet."""


def hit(name: str, step: int) -> None:
    assert name in POINTS, name
    if os.environ.get(ENV) == f"{name}:{step}":
        os.kill(os.getpid(), signal.SIGKILL)
