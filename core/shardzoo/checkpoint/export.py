"""Checkpoint -> Hugging Face model folder (`shardzoo export <checkpoint> --format hf <dir>`).

Writes config.json (dtype set to the exported dtype), generation_config.json, the tokenizer
files, and the weights as safetensors shards of at most `max_shard_bytes` with
model.safetensors.index.json (a single model.safetensors when everything fits in one shard;
diffusers models: diffusion_pytorch_model.* and no dtype key, which diffusers configs lack),
in the model's HF layout through its adapter. Each weight file's header is computed from the
checkpoint's shapes first; its tensors are then read, converted and written one at a time (or one
joined group at a time, conversion_units), so a rank holds about one tensor, never a whole file.
With several ranks (`torchrun ... shardzoo export`, or the run's own export at the end) each writes
every world-th file. Each file appears atomically; the index is written last, and the folder is
assembled beside the target and renamed into place when complete.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Callable, Iterator, Optional

import torch

from . import dcp_state, layout
from .adapter import StateDictAdapter
from .hf_files import HF_DIR
from .hf_weights import DIFFUSERS_WEIGHTS, INDEX_NAME, weights_stem
from .manifest import CheckpointError, raise_if_any, verify
from .run_lock import LOCK_NAME as RUN_LOCK
from .safetensors_writer import write_safetensors

log = logging.getLogger(__name__)

DEFAULT_MAX_SHARD_BYTES = 5 * 2**30
EXPORT_MARKER = ".shardzoo-export"
"""Written into every export: `--overwrite` replaces only folders that hold it."""
_DTYPES = {"fp32": torch.float32, "float32": torch.float32, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
           "fp16": torch.float16, "float16": torch.float16}
Gather = Callable[[object], list]


def resolve_checkpoint(path: Path) -> Path:
    """A checkpoint directory, or an output_dir whose newest complete checkpoint is meant."""
    if (path / layout.MANIFEST).is_file():
        return path
    done = layout.complete(path)
    if done:
        return done[-1]
    raise CheckpointError(f"{path}: neither a complete checkpoint (no {layout.MANIFEST}) nor an output_dir holding "
                          "one; give a checkpoint-<step> directory")


def block_of(name: str) -> str:
    """The numbered block a parameter belongs to (`model.layers.3`), or '' outside blocks. Converter
    ops never join tensors of different blocks, so a block is the unit an output shard holds."""
    parts = name.split(".")
    for i, part in enumerate(parts):
        if part.isdigit():
            return ".".join(parts[: i + 1])
    return ""


def _natural(name: str) -> list:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


def plan_shards(specs: dict[str, tuple[torch.Size, torch.dtype]], itemsize: int, max_bytes: int) -> list[list[str]]:
    """Our parameter names grouped into output shards of whole blocks, in natural order."""
    blocks: dict[str, list[str]] = {}
    for name in sorted(specs, key=_natural):
        blocks.setdefault(block_of(name), []).append(name)
    shards: list[list[str]] = []
    size = 0
    for names in blocks.values():
        block_bytes = sum(specs[n][0].numel() for n in names) * itemsize
        if shards and size + block_bytes <= max_bytes:
            shards[-1].extend(names)
            size += block_bytes
        else:
            shards.append(list(names))
            size = block_bytes
    return shards


def _hf_shapes(names: list[str], specs: dict, adapter: StateDictAdapter, hf_config) -> list[tuple[str, torch.Size]]:
    """The HF tensors `names` become, from their shapes alone (the conversion run on meta tensors)."""
    meta = ((n, torch.empty(specs[n][0], dtype=specs[n][1], device="meta")) for n in names)
    return [(k, t.shape) for k, t in adapter.to_hf(meta, hf_config)]


def conversion_units(names: list[str], specs: dict, adapter: StateDictAdapter, hf_config) -> list[list[str]]:
    """`names` cut into the groups that are read and converted together: a parameter the adapter
    converts on its own is its own group; those it joins with others (e.g. parts of a fused tensor)
    stay together with their block. Memory then holds one group, mostly one tensor."""
    alone, joined = [], {}
    for name in names:
        try:
            _hf_shapes([name], specs, adapter, hf_config)
            alone.append([name])
        except KeyError:  # an op waits for partners that are not in the list
            joined.setdefault(block_of(name), []).append(name)
    return alone + list(joined.values())


def _converted(units: list[list[str]], state_dir: Path, specs: dict, adapter: StateDictAdapter, hf_config,
               dtype: torch.dtype) -> Iterator[tuple[str, torch.Tensor]]:
    """The HF tensors of `units`, one unit read from the checkpoint at a time."""
    for unit in units:
        ours = dcp_state.load_model_tensors(state_dir, {n: specs[n] for n in unit})
        for key, tensor in adapter.to_hf(((n, ours.pop(n)) for n in unit), hf_config):
            yield key, tensor.to(dtype)


def export_dtype_of(name: str, config: dict, specs: dict) -> torch.dtype:
    if name != "auto":
        return _DTYPES[name]
    declared = config.get("dtype") or config.get("torch_dtype")
    if declared in _DTYPES:
        return _DTYPES[declared]
    return next(iter(specs.values()))[1]


def _training_state(path: Path) -> Optional[str]:
    """What training state `path` is, if any: a checkpoint (published or being saved) or a run folder."""
    if (path / layout.MANIFEST).is_file() or layout.step_of(path) is not None \
            or path.name.startswith(layout.TMP_PREFIX + layout.PREFIX):
        return "a checkpoint"
    if path.is_dir() and ((path / layout.LATEST).is_file() or (path / "metrics.jsonl").is_file()
                          or (path / RUN_LOCK).exists() or layout.published(path)):
        return "a training run's output_dir"
    return None


def _check_target(out_dir: Path, overwrite: bool, run_dir: Optional[Path]) -> Optional[str]:
    """Why writing the export to `out_dir` could destroy work, or None. `run_dir`: the run whose own
    end-of-training export this is (it writes <run_dir>/hf)."""
    out_dir = out_dir.resolve()
    if out_dir.exists() and not out_dir.is_dir():
        return f"{out_dir} exists and is not a directory"
    own = run_dir is not None and out_dir.parent == Path(run_dir).resolve()
    what = _training_state(out_dir)
    if what:
        return f"{out_dir} is {what}; export into a folder of its own"
    for parent in out_dir.parents:
        if (what := _training_state(parent)) and not (own and parent == out_dir.parent):
            return f"{out_dir} is inside {parent}, {what}; export into a folder outside it"
    if out_dir.is_dir():
        for marker in (layout.MANIFEST, "metrics.jsonl", RUN_LOCK):
            held = next(out_dir.rglob(marker), None)
            if held is not None:
                return f"{out_dir} holds training state ({held}); export into a folder of its own"
        if any(out_dir.iterdir()):
            if not overwrite:
                return f"{out_dir} is not empty; choose another directory or pass --overwrite"
            if not own and not (out_dir / EXPORT_MARKER).is_file():
                return (f"{out_dir} was not written by shardzoo export (no {EXPORT_MARKER}), so --overwrite does not "
                        "replace it; remove it yourself or choose another directory")
    return None


def export_hf(checkpoint: Path, out_dir: Path, *, adapter: StateDictAdapter, hf_config, dtype: str = "auto",
              max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES, rank: int = 0, world: int = 1, overwrite: bool = False,
              gather: Optional[Gather] = None, run_dir: Optional[Path] = None) -> Path:
    """Write the model of `checkpoint` as an HF folder at `out_dir`, mapped to the HF layout by `adapter`
    (the model's; converters may read `hf_config`). Collective when world > 1. A target that is, holds
    or sits inside training state is refused; `overwrite` replaces only an earlier export (marked by
    EXPORT_MARKER), except the run's own `<run_dir>/hf`."""
    gather = gather or (lambda obj: [obj])
    checkpoint, out_dir = resolve_checkpoint(Path(checkpoint)), Path(out_dir)
    raise_if_any(gather, _check_target(out_dir, overwrite, run_dir))
    verify(checkpoint, rank, world, gather)
    hf_src = checkpoint / HF_DIR
    raw = json.loads((hf_src / "config.json").read_text())
    state_dir = checkpoint / "state"
    specs = dcp_state.model_tensor_specs(state_dir)
    out_dtype = export_dtype_of(dtype, raw, specs)
    shards = plan_shards(specs, torch.empty((), dtype=out_dtype).element_size(), max_shard_bytes)
    stem = weights_stem(raw)
    names = ([f"{stem}.safetensors"] if len(shards) == 1 else
             [f"{stem}-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))])
    tmp = out_dir.with_name(f"{layout.TMP_PREFIX}export-{out_dir.name}")
    error = None
    if rank == 0:
        try:
            if tmp.exists():
                shutil.rmtree(tmp)
            tmp.mkdir(parents=True)
        except OSError as exc:
            error = f"cannot create {tmp}: {exc}"
    raise_if_any(gather, error)

    weight_map: dict[str, str] = {}
    nbytes, error = 0, None
    try:
        for i in range(rank, len(shards), world):
            units = conversion_units(shards[i], specs, adapter, hf_config)
            file_layout = [(k, shape, out_dtype) for unit in units
                           for k, shape in _hf_shapes(unit, specs, adapter, hf_config)]
            nbytes += write_safetensors(tmp / names[i], file_layout,
                                        _converted(units, state_dir, specs, adapter, hf_config, out_dtype),
                                        metadata={"format": "pt"})
            weight_map.update(dict.fromkeys((k for k, _, _ in file_layout), names[i]))
    except Exception as exc:  # noqa: BLE001 - reported to every rank
        error = f"exporting {checkpoint}: {exc!r}"
    parts = gather((error, weight_map, nbytes))
    errors = [e for e, _, _ in parts if e]
    if errors:
        raise CheckpointError(errors[0])
    if rank == 0:
        merged = {k: v for _, part, _ in parts for k, v in part.items()}
        _finish(tmp, out_dir, hf_src, raw, out_dtype, merged, sum(n for _, _, n in parts), len(shards), overwrite)
        log.info("exported %s to %s (%d file(s), %s)", checkpoint, out_dir, len(shards), out_dtype)
    gather(None)  # no rank returns before the folder is in place
    return out_dir


def _finish(tmp: Path, out_dir: Path, hf_src: Path, raw: dict, dtype: torch.dtype, weight_map: dict[str, str],
            total_bytes: int, n_shards: int, overwrite: bool) -> None:
    for path in hf_src.iterdir():
        if path.is_file() and path.name != "config.json":
            shutil.copy2(path, tmp / path.name)
    stem = weights_stem(raw)
    if stem != DIFFUSERS_WEIGHTS:
        raw = {**raw, "dtype": str(dtype).removeprefix("torch.")}
        raw.pop("torch_dtype", None)
    (tmp / "config.json").write_text(json.dumps(raw, indent=2, sort_keys=True) + "\n")
    (tmp / EXPORT_MARKER).write_text("written by shardzoo export; `--overwrite` may replace this folder\n")
    if n_shards > 1:
        index = {"metadata": {"total_size": total_bytes}, "weight_map": dict(sorted(weight_map.items()))}
        (tmp / (INDEX_NAME if stem == "model" else f"{stem}.safetensors.index.json")).write_text(
            json.dumps(index, indent=2) + "\n")
    # The old export stays whole until the new one is in place: a crash leaves one of them.
    old = out_dir.with_name(f"{layout.DELETING_PREFIX}export-{out_dir.name}")
    if out_dir.exists():
        assert overwrite or not any(out_dir.iterdir())
        if old.exists():
            shutil.rmtree(old)
        os.replace(out_dir, old)
    os.replace(tmp, out_dir)
    if old.exists():
        shutil.rmtree(old)
