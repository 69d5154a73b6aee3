"""Every random generator a rank uses, as JSON: python, numpy, torch CPU and the accelerator.

JSON rather than pickle so a checkpoint never executes code when it is read.
"""

from __future__ import annotations

import base64
import logging
import random
from typing import Any

import numpy as np
import torch

from .. import device as devices

log = logging.getLogger(__name__)


def _bytes_of(state: torch.Tensor) -> str:
    return base64.b64encode(state.cpu().numpy().tobytes()).decode("ascii")


def _tensor_of(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8)


def capture(device_type: str) -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"python": [version, list(internal), gauss],
             "numpy": [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)],
             "torch": _bytes_of(torch.get_rng_state())}
    device_state = devices.get_rng_state(device_type)
    if device_state is not None:
        state[device_type] = _bytes_of(device_state)
    return state


def restore(state: dict[str, Any], device_type: str) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(_tensor_of(state["torch"]))
    if device_type == "cpu":
        return
    if device_type in state:
        devices.set_rng_state(device_type, _tensor_of(state[device_type]))
    else:
        # Saved on another device type: only random ops on the accelerator (dropout) see a new stream.
        log.warning("the checkpoint holds no %s generator state; that generator keeps its seed", device_type)
