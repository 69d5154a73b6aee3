"""The non-weight files of a Hugging Face model folder: config.json, generation_config.json, tokenizer.

Every checkpoint carries them (under hf/), so an export needs nothing but the checkpoint. A model
whose config is not a transformers config (a diffusers model's) writes its own config.json through
the same `save_pretrained(dir)` and has no generation config.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Optional, Sequence

HF_DIR = "hf"


def write_hf_files(out: Path, hf_config, tokenizer, source_dir: Optional[str],
                   architectures: Sequence[str] = ()) -> None:
    """config.json (+ architectures when the config has none), generation_config.json and the tokenizer."""
    from transformers import GenerationConfig, PretrainedConfig

    out.mkdir(parents=True, exist_ok=True)
    if not isinstance(hf_config, PretrainedConfig):
        hf_config.save_pretrained(str(out))
        return
    if getattr(hf_config, "quantization_config", None) is not None:
        # Weights are dequantised on import (e.g. GPT-OSS MXFP4) and trained and saved unquantised;
        # a quantization_config left in config.json would make loaders expect the quantised layout.
        hf_config = copy.deepcopy(hf_config)
        del hf_config.quantization_config
    if not getattr(hf_config, "architectures", None) and architectures:
        hf_config.architectures = [architectures[0]]
    hf_config.save_pretrained(str(out))
    if source_dir is not None and (Path(source_dir) / "generation_config.json").is_file():
        generation = GenerationConfig.from_pretrained(source_dir)
    else:
        generation = GenerationConfig.from_model_config(hf_config)
    generation.save_pretrained(str(out))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(out))
