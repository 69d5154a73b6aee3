"""Write one safetensors file tensor by tensor, atomically.

The header (names, dtypes, shapes, offsets) is known before any value: the export derives it from
the checkpoint's shapes on the meta device. Values then stream in, each written as soon as it
comes, so the writer holds one tensor at a time (safetensors' own `save_file` first copies every
tensor of the file into bytes). The file is written under a hidden temporary name, synced and
renamed into place, so a reader sees the whole file or none.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Iterable, Optional, Sequence

import torch

from .hf_weights import DTYPES

_CODES = {dtype: code for code, dtype in DTYPES.items()}
Layout = Sequence[tuple[str, torch.Size, torch.dtype]]


def _nbytes(shape: torch.Size, dtype: torch.dtype) -> int:
    return shape.numel() * torch.empty((), dtype=dtype).element_size()


def header_bytes(layout: Layout, metadata: Optional[dict[str, str]] = None) -> bytes:
    """The length-prefixed JSON header, padded with spaces to 8 bytes as safetensors writes it."""
    header: dict = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name, shape, dtype in layout:
        end = offset + _nbytes(shape, dtype)
        header[name] = {"dtype": _CODES[dtype], "shape": list(shape), "data_offsets": [offset, end]}
        offset = end
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text


def write_safetensors(path: Path, layout: Layout, tensors: Iterable[tuple[str, torch.Tensor]],
                      metadata: Optional[dict[str, str]] = None) -> int:
    """Write `tensors`, which must come in `layout`'s order with its shapes and dtypes; returns the bytes
    of tensor data. Atomic: `path` appears only once complete."""
    partial = path.with_name(f".{path.name}.partial")
    expected = iter(layout)
    total = 0
    with open(partial, "wb") as f:
        f.write(header_bytes(layout, metadata))
        for name, tensor in tensors:
            want = next(expected, None)
            got = (name, tensor.shape, tensor.dtype)
            assert want is not None and got == tuple(want), f"{path}: expected {want}, got {got}"
            if tensor.numel():
                f.write(memoryview(tensor.contiguous().reshape(-1).view(torch.uint8).numpy()))
            total += tensor.numel() * tensor.element_size()
        left = next(expected, None)
        assert left is None, f"{path}: {left[0]} never came"
        f.flush()
        os.fsync(f.fileno())
    os.replace(partial, path)
    return total
