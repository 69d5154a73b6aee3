"""One op name, several backends with the reference's signature, chosen by device and config.

Each op file creates an `Op` from its pure-torch reference (the truth; runs on every device),
registers further backends and an example input (what `shardzoo.bench.ops` times them on).
Calling the op dispatches on the device type of its first tensor argument to the backend bound
for that device: `auto` (the default) picks the highest-priority backend that can run there; an
explicit choice that cannot run raises, it never falls back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import torch

from ..device import DEVICE_TYPES
from ..errors import ConfigError

OP_BACKEND_AUTO = "auto"
"""The `ops:` value that lets the device pick (the schema's default for every op)."""

REFERENCE = "reference"
ALL_DEVICES = DEVICE_TYPES


@dataclass(frozen=True)
class Backend:
    name: str
    fn: Callable
    devices: tuple[str, ...]
    priority: int = 0
    """Higher wins under `auto`."""
    unavailable: Optional[Callable[[], Optional[str]]] = None
    """Returns why the backend cannot run in this process (missing package, old torch), or None."""

    def why_not(self, device_type: str) -> Optional[str]:
        if device_type not in self.devices:
            return f"runs on {', '.join(self.devices)}, not {device_type}"
        return self.unavailable() if self.unavailable is not None else None


class Op:
    def __init__(self, name: str, reference: Callable):
        self.name = name
        self.backends: dict[str, Backend] = {REFERENCE: Backend(REFERENCE, reference, ALL_DEVICES)}
        self._bound: dict[str, Backend] = {}
        self.example: Optional[Callable[[int, torch.dtype], tuple[tuple, dict]]] = None
        OPS[name] = self

    def set_example(self, fn: Callable[[int, torch.dtype], tuple[tuple, dict]]) -> Callable:
        """Register (tokens, dtype) -> (args, kwargs): typical training inputs for `tokens` tokens on
        the default device, float inputs requiring grad as in training, for the op benchmarks."""
        self.example = fn
        return fn

    def register(self, name: str, devices: tuple[str, ...], priority: int = 0,
                 unavailable: Optional[Callable[[], Optional[str]]] = None) -> Callable:
        def deco(fn: Callable) -> Callable:
            self.backends[name] = Backend(name, fn, tuple(devices), priority, unavailable)
            self._bound.clear()
            return fn
        return deco

    def auto(self, device_type: str) -> Backend:
        usable = [b for b in self.backends.values() if b.why_not(device_type) is None]
        return max(usable, key=lambda b: b.priority)

    def select(self, device_type: str, choice: str = OP_BACKEND_AUTO) -> Backend:
        if choice == OP_BACKEND_AUTO:
            return self.auto(device_type)
        if choice not in self.backends:
            raise ConfigError(f"ops.{self.name}: unknown backend {choice!r}; choose auto or one of "
                              f"{', '.join(self.backends)}")
        reason = self.backends[choice].why_not(device_type)
        if reason is not None:
            raise ConfigError(f"ops.{self.name}={choice}: cannot run here ({reason}); choose another backend "
                              "or auto")
        return self.backends[choice]

    def bind(self, device_type: str, choice: str = OP_BACKEND_AUTO) -> Backend:
        backend = self.select(device_type, choice)
        self._bound[device_type] = backend
        return backend

    def bound(self, device_type: str) -> Backend:
        backend = self._bound.get(device_type)
        if backend is None:
            backend = self.bind(device_type)
        return backend

    def __call__(self, x: torch.Tensor, *args, **kwargs):
        return self.bound(x.device.type).fn(x, *args, **kwargs)


OPS: dict[str, Op] = {}


def bind_ops(choices: dict[str, str], device_type: str) -> dict[str, str]:
    """Bind every op for `device_type` from the `ops:` config section; returns op -> backend name."""
    unknown = sorted(set(choices) - set(OPS))
    if unknown:
        raise ConfigError(f"ops.{unknown[0]}: no such op; the ops are {', '.join(sorted(OPS))}")
    bound = {}
    for name, op in OPS.items():
        bound[name] = op.bind(device_type, choices.get(name, OP_BACKEND_AUTO)).name
    return bound


def ops_table(device_type: str) -> list[tuple[str, str, str, str]]:
    """Rows (op, backend, status, note) for `shardzoo ops`."""
    rows = []
    for name, op in OPS.items():
        bound = op.bound(device_type).name
        for backend in op.backends.values():
            reason = backend.why_not(device_type)
            status = "bound" if backend.name == bound else ("available" if reason is None else "unavailable")
            rows.append((name, backend.name, status, reason or ""))
    return rows
