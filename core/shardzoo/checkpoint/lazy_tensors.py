"""Tensors of an HF checkpoint that are read only where a rank needs them.

A `StoredTensor` is a tensor's place in a safetensors file; `read(region)` reads the rows of its
first dim that the region covers (one contiguous byte range) and narrows the other dims. A
`Joined` is several of them stacked or concatenated, as the adapter's Stack and Concat ops build
our expert stacks; reading a region of it reads only the parts inside it. So a rank that keeps
1/N of a parameter reads about 1/N of its bytes (parallel/materialize.py asks for the region).

Converter ops that compute on values (transpose, interleave, fused qkv, MXFP4) call `materialize`
and read the whole tensor, as before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import torch

from ..errors import CheckpointError

Region = Sequence[tuple[int, int]]
"""(start, stop) per dim."""


def _narrow(tensor: torch.Tensor, region: Region, first_dim: int) -> torch.Tensor:
    for dim in range(first_dim, tensor.dim()):
        start, stop = region[dim]
        if (start, stop) != (0, tensor.shape[dim]):
            tensor = tensor.narrow(dim, start, stop - start)
    return tensor.contiguous()


class StoredTensor:
    """One tensor of a safetensors file, by its header entry; nothing is read until `read`."""

    def __init__(self, path: Path, name: str, shape: Sequence[int], dtype: torch.dtype, offset: int, nbytes: int):
        self.path, self.name, self.offset, self.nbytes = path, name, offset, nbytes
        self.shape, self.dtype = torch.Size(shape), dtype

    def read(self, region: Optional[Region] = None) -> torch.Tensor:
        """The whole tensor, or the part `region` covers."""
        rows = (0, self.shape[0]) if self.shape else (0, 1)
        if region is not None and self.shape:
            rows = region[0]
        row_bytes = self.nbytes // max(self.shape[0], 1) if self.shape else self.nbytes
        out = torch.empty((rows[1] - rows[0], *self.shape[1:]) if self.shape else (), dtype=self.dtype)
        flat = out.reshape(-1).view(torch.uint8)
        if flat.numel():
            with open(self.path, "rb", buffering=0) as f:
                f.seek(self.offset + rows[0] * row_bytes)
                got = f.readinto(memoryview(flat.numpy()))
            if got != flat.numel():
                raise CheckpointError(f"{self.path}: tensor {self.name}: read {got} of {flat.numel()} bytes "
                                      "(truncated)")
        return out if region is None or not self.shape else _narrow(out, region, 1)


class Joined:
    """Parts stacked along a new dim (`stacked`) or concatenated along an existing one, unread."""

    def __init__(self, parts: Sequence["Lazy"], dim: int, stacked: bool):
        shapes = {tuple(p.shape) for p in parts} if stacked else {tuple(p.shape[:dim] + p.shape[dim + 1:])
                                                                  for p in parts}
        assert len(shapes) == 1 and len({p.dtype for p in parts}) == 1, "joined parts must agree"
        first = parts[0].shape
        size = len(parts) if stacked else sum(p.shape[dim] for p in parts)
        self.shape = torch.Size((*first[:dim], size, *(first[dim:] if stacked else first[dim + 1:])))
        self.parts, self.dim, self.stacked, self.dtype = list(parts), dim, stacked, parts[0].dtype

    def read(self, region: Optional[Region] = None) -> torch.Tensor:
        region = list(region) if region is not None else [(0, n) for n in self.shape]
        start, stop = region[self.dim]
        pieces, offset = [], 0
        for part in self.parts:
            size = 1 if self.stacked else part.shape[self.dim]
            lo, hi = max(start, offset), min(stop, offset + size)
            if lo < hi:
                if self.stacked:
                    piece = part.read(region[:self.dim] + region[self.dim + 1:]).unsqueeze(self.dim)
                else:
                    piece = part.read(region[:self.dim] + [(lo - offset, hi - offset)] + region[self.dim + 1:])
                pieces.append(piece)
            offset += size
        if not pieces:
            shape = [b - a for a, b in region]
            return torch.empty(shape, dtype=self.dtype)
        return torch.cat(pieces, dim=self.dim)


Lazy = Union[StoredTensor, Joined]


def is_lazy(value) -> bool:
    return isinstance(value, (StoredTensor, Joined))


def materialize(value) -> torch.Tensor:
    """The whole value of a tensor or lazy tensor."""
    return value.read() if is_lazy(value) else value


def join(parts: Sequence, dim: int, stacked: bool):
    """torch.stack / torch.cat of the parts, unread while every part is lazy and the dtypes agree."""
    if all(is_lazy(p) for p in parts) and len({p.dtype for p in parts}) == 1 and dim >= 0:
        return Joined(parts, dim, stacked)
    tensors = [materialize(p) for p in parts]
    return torch.stack(tensors, dim=dim) if stacked else torch.cat(tensors, dim=dim)
