"""SIGTERM (a scheduler's preemption notice) becomes "save, then stop" instead of a lost run.

The handler only records the signal; the loop agrees on it across ranks inside the step's loss
all-reduce (no extra collective) and stops at the same step everywhere, saves, and returns.
"""

from __future__ import annotations

import logging
import signal
import threading

log = logging.getLogger(__name__)


class StopRequest:
    def __init__(self, signals: tuple[int, ...] = (signal.SIGTERM,)):
        self.signals, self.received, self._previous = signals, None, {}

    def __enter__(self) -> "StopRequest":
        # Signal handlers can only be installed from the main thread (tests may train elsewhere).
        if threading.current_thread() is threading.main_thread():
            for sig in self.signals:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        if self.received is None:
            log.warning("%s received: saving a checkpoint after this step, then stopping",
                        signal.Signals(signum).name)
        self.received = signal.Signals(signum).name

    @property
    def flag(self) -> float:
        return 0.0 if self.received is None else 1.0
