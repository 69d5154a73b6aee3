"""Read HF safetensors checkpoints tensor by tensor (single file, or sharded with an index).

The reader parses the safetensors header itself and reads each tensor with one `readinto` into
its final buffer: no memory map, so the page cache of a 100 GB checkpoint never counts towards
a rank's resident memory, and at most one full tensor is held at a time. Read lazily, a rank
reads only the rows it keeps (lazy_tensors.py). safetensors holds
raw little-endian bytes plus a JSON header, so reading it never executes code.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Iterator

import torch

from ..errors import CheckpointError
from .lazy_tensors import StoredTensor

INDEX_NAME = "model.safetensors.index.json"
DIFFUSERS_WEIGHTS = "diffusion_pytorch_model"
"""diffusers' weight file stem (diffusion_pytorch_model.safetensors, or shards with its .index.json)."""


def weights_stem(config: dict) -> str:
    """The weight file stem a loader of this config.json expects: diffusers configs name `_class_name`."""
    return DIFFUSERS_WEIGHTS if "_class_name" in config else "model"

DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}
_MAX_HEADER = 100 * 2**20


def safetensors_files(model_dir: str | Path) -> list[Path]:
    """The weight files of a checkpoint folder, validated against its index when there is one."""
    model_dir = Path(model_dir)
    index = next((i for i in (model_dir / INDEX_NAME, model_dir / f"{DIFFUSERS_WEIGHTS}.safetensors.index.json")
                  if i.is_file()), None)
    if index is not None:
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError) as exc:
            raise CheckpointError(f"{index}: not a valid safetensors index (needs a 'weight_map'): {exc}") from None
        files = [model_dir / name for name in sorted(set(weight_map.values()))]
        missing = [str(f) for f in files if not f.is_file()]
        if missing:
            raise CheckpointError(f"{index} names shard files that do not exist: {missing}")
        return files
    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise CheckpointError(f"{model_dir}: no *.safetensors files and no {INDEX_NAME}")
    return files


def read_header(path: Path) -> tuple[dict, int]:
    """(tensor entries, offset of the data section); a malformed or truncated file names itself."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise CheckpointError(f"{path}: {size} bytes is too short for a safetensors file (truncated?)")
        (n,) = struct.unpack("<Q", raw)
        if n > min(_MAX_HEADER, size - 8):
            raise CheckpointError(f"{path}: header length {n} does not fit the file's {size} bytes (corrupted or "
                             "truncated); re-download or re-export it")
        try:
            header = json.loads(f.read(n))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{path}: safetensors header is not valid JSON ({exc}); the file is "
                                  "corrupted") from None
    header.pop("__metadata__", None)
    data_start = 8 + n
    for name, info in header.items():
        if info.get("dtype") not in DTYPES:
            raise CheckpointError(f"{path}: tensor {name} has dtype {info.get('dtype')!r}, which shardzoo cannot read "
                             f"(known: {', '.join(DTYPES)})")
        end = data_start + info["data_offsets"][1]
        if end > size:
            raise CheckpointError(f"{path}: tensor {name} ends at byte {end} but the file has {size} bytes "
                                  "(truncated); "
                             "re-download or re-export it")
    return header, data_start


def stored_tensors(path: Path) -> list[StoredTensor]:
    """The tensors of one safetensors file in file order, unread; a size that does not fit its shape
    names the tensor."""
    header, data_start = read_header(path)
    tensors = []
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        begin, end = info["data_offsets"]
        dtype = DTYPES[info["dtype"]]
        need = torch.Size(info["shape"]).numel() * torch.empty((), dtype=dtype).element_size()
        if need != end - begin:
            raise CheckpointError(f"{path}: tensor {name} holds {end - begin} bytes, but shape {info['shape']} "
                                  f"{info['dtype']} needs {need}; the file is corrupted")
        tensors.append(StoredTensor(path, name, info["shape"], dtype, data_start + begin, end - begin))
    return tensors


def iter_safetensors(model_dir: str | Path, lazy: bool = False) -> Iterator[tuple[str, torch.Tensor | StoredTensor]]:
    """(name, tensor) for every tensor, one at a time, in file order; `lazy`: (name, StoredTensor), each
    read later only where it is needed (lazy_tensors.py)."""
    for path in safetensors_files(model_dir):
        for stored in stored_tensors(path):
            yield stored.name, (stored if lazy else stored.read())
