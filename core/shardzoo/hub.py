"""Hub names for model and tokenizer (`model_name_or_path: Qwen/Qwen3-8B`): resolved to a local folder
through huggingface_hub's cache before anything else reads them.

Online, the first rank of each node downloads (the weights, configs, tokenizer and code files only)
and the node's other ranks wait for it, then read the same snapshot. With HF_HUB_OFFLINE=1 every rank
reads the cache. When neither can provide the model, one line names the id, HF_HOME and the offline
flag. A value that is an existing path is a path, never a hub id.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from .errors import ConfigError

HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
KEYS = ("model_name_or_path", "tokenizer_name_or_path")
FILES = ["*.json", "*.safetensors", "*.model", "*.txt", "*.py", "*.tiktoken", "*.jinja"]
"""What a training run reads of a model repository (no duplicate .bin / .pth weights)."""
WAIT_S = 6 * 3600
"""How long a node's other ranks wait for its first rank's download."""


def is_hub_id(value: str) -> bool:
    return bool(HUB_ID.fullmatch(value)) and not Path(os.path.expanduser(value)).exists()


def resolve_hub_names(model_cfg) -> None:
    """Replace hub ids in the model section (ModelConfig) by the local snapshot folders."""
    for key in KEYS:
        value = getattr(model_cfg, key)
        if value and is_hub_id(value):
            setattr(model_cfg, key, str(_snapshot(value, f"model.{key}")))


def _ready_marker(repo_id: str) -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE) / f".shardzoo-ready-{repo_id.replace('/', '--')}"


def _snapshot(repo_id: str, key: str) -> Path:
    from huggingface_hub import constants, snapshot_download

    offline = bool(constants.HF_HUB_OFFLINE)
    first = int(os.environ.get("LOCAL_RANK", "0")) == 0
    try:
        if first:
            path = Path(snapshot_download(repo_id, local_files_only=offline, allow_patterns=FILES))
            if not offline:  # tell the node's other ranks the download is whole
                _ready_marker(repo_id).write_text(str(path))
            return path
        deadline = time.monotonic() + WAIT_S
        while not offline and not _ready_marker(repo_id).is_file():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the node's first rank did not finish downloading in {WAIT_S} s")
            time.sleep(2)
        return Path(snapshot_download(repo_id, local_files_only=True, allow_patterns=FILES))
    except Exception as exc:  # noqa: BLE001 - every hub failure ends in the same one-line advice
        raise ConfigError(f"{key}: {repo_id!r} is no local folder and the hub could not provide it "
                          f"({type(exc).__name__}); HF_HOME={constants.HF_HOME}, HF_HUB_OFFLINE="
                          f"{'1' if offline else '0'}: download it into that cache (huggingface-cli download "
                          f"{repo_id}) or point {key} at a local folder") from None
