"""Model and optimizer state through torch.distributed.checkpoint, stored as safetensors.

Each rank writes its own shards (DTensor offsets in the safetensors header) and DCP reshards on
load, so a run may resume on another world size. The DCP payload is tensors only: DCP's
default reader unpickles non-tensor values and its default metadata file is a pickle, and a
checkpoint must never run code when it is read; the few non-tensor optimizer settings travel
as JSON beside it (see manager.py).
"""

from __future__ import annotations

from concurrent.futures import Future
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import torch.nn as nn
from torch.distributed.checkpoint.hf_storage import HuggingFaceStorageReader, HuggingFaceStorageWriter
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

MODEL_KEY = "model"
OPTIM_KEY = "optim"


def _tensor_leaves(tree: Any, path: str = "") -> list[str]:
    """Paths of every leaf that is not a tensor (there must be none)."""
    if isinstance(tree, dict):
        return [p for k, v in tree.items() for p in _tensor_leaves(v, f"{path}.{k}" if path else str(k))]
    return [] if isinstance(tree, torch.Tensor) else [path]


def _without_aliases(state: dict[str, torch.Tensor], model: nn.Module) -> dict[str, torch.Tensor]:
    """Drop the names under which a parameter appears a second time (tied embeddings): safetensors
    stores each tensor once, and loading the first name fills the shared parameter. Decided from the
    module tree, so every rank drops the same names."""
    first: dict[int, str] = {}
    aliases = set()
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in first:
            aliases.add(name)
        else:
            first[id(param)] = name
    return {k: v for k, v in state.items() if k not in aliases}


def _json_value(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.item()
    return list(value) if isinstance(value, tuple) else value


def _payload(model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[dict, list[dict]]:
    model_sd, optim_sd = get_state_dict(model, optimizer)
    payload = {MODEL_KEY: _without_aliases(model_sd, model), OPTIM_KEY: optim_sd["state"]}
    others = _tensor_leaves(payload)
    assert not others, f"non-tensor values would be pickled into the checkpoint: {others[:5]}"
    # The groups' parameter names are saved too: a run with another layout (e.g. expert parallel on or
    # off) splits the same parameters into other groups, and takes each group's settings by name.
    return payload, [{k: _json_value(v) for k, v in group.items()} for group in optim_sd["param_groups"]]


def save(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer) -> list[dict]:
    """Write model + optimizer tensors under `path` (collective); returns the param-group settings as JSON."""
    payload, groups = _payload(model, optimizer)
    dcp.save(payload, storage_writer=HuggingFaceStorageWriter(str(path), save_distributed=True))
    return groups


def save_async(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer,
               group: dist.ProcessGroup) -> tuple[list[dict], Future]:
    """As `save`, but returns once the tensors are copied to host memory; a background thread writes
    them, coordinating over `group` (a CPU group of its own: the training's collectives run meanwhile).
    The future completes when this rank's files are written."""
    payload, groups = _payload(model, optimizer)
    future = dcp.async_save(payload, storage_writer=HuggingFaceStorageWriter(str(path), save_distributed=True),
                            process_group=group)
    return groups, future


def _settings_for(group: dict, saved_groups: list[dict], index: int) -> dict:
    """The saved settings of `group` (current, params as FQNs): from the saved group(s) holding its
    parameters, which must agree; checkpoints without names match groups by position."""
    if any("params" not in saved for saved in saved_groups):
        return saved_groups[index]
    owner = {name: i for i, saved in enumerate(saved_groups) for name in saved["params"]}
    missing = [name for name in group["params"] if name not in owner]
    if missing:
        raise ValueError(f"optimizer parameters {missing[:5]} are in no parameter group of the checkpoint")
    settings = [{k: v for k, v in saved_groups[i].items() if k != "params"}
                for i in sorted({owner[name] for name in group["params"]})]
    if any(s != settings[0] for s in settings[1:]):
        raise ValueError(f"optimizer group {index} of this run joins parameters that the checkpoint trained with "
                         f"different settings ({settings}); resume with the same optimizer settings")
    return settings[0]


def load(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, param_groups: list[dict]) -> None:
    """Load model + optimizer tensors from `path` (collective) and the saved param-group settings."""
    model_sd, optim_sd = get_state_dict(model, optimizer)
    named = all("params" in saved for saved in param_groups)
    if not named and len(param_groups) != len(optim_sd["param_groups"]):
        raise ValueError(f"the checkpoint has {len(param_groups)} optimizer parameter groups, this run has "
                         f"{len(optim_sd['param_groups'])}; resume with the same optimizer settings")
    settings = [_settings_for(group, param_groups, i) for i, group in enumerate(optim_sd["param_groups"])]
    dcp.load({MODEL_KEY: _without_aliases(model_sd, model), OPTIM_KEY: optim_sd["state"]},
             storage_reader=HuggingFaceStorageReader(str(path)))
    for group, saved in zip(optim_sd["param_groups"], settings):
        for key, value in saved.items():
            if key == "params":
                continue
            current = group.get(key)
            if isinstance(current, torch.Tensor):
                group[key] = torch.tensor(value, dtype=current.dtype, device=current.device)
            else:
                group[key] = tuple(value) if isinstance(current, tuple) else value
    set_state_dict(model, optimizer, model_state_dict=model_sd, optim_state_dict=optim_sd)


def model_tensor_specs(path: Path) -> dict[str, tuple[torch.Size, torch.dtype]]:
    """{our parameter name: (shape, dtype)} of the model part of a saved state, from the file headers."""
    metadata = HuggingFaceStorageReader(str(path)).read_metadata()
    prefix = MODEL_KEY + "."
    return {fqn[len(prefix):]: (md.size, md.properties.dtype) for fqn, md in metadata.state_dict_metadata.items()
            if fqn.startswith(prefix)}


def load_model_tensors(path: Path, specs: dict[str, tuple[torch.Size, torch.dtype]]) -> dict[str, torch.Tensor]:
    """Full tensors of some model parameters, in this process only (no collectives)."""
    tensors = {name: torch.empty(shape, dtype=dtype) for name, (shape, dtype) in specs.items()}
    dcp.load({MODEL_KEY: tensors}, storage_reader=HuggingFaceStorageReader(str(path)), no_dist=True)
    return tensors
