"""HF weights in (safetensors through a state-dict adapter). DCP save/resume and export come later."""

from .adapter import StateDictAdapter
from .hf_weights import iter_safetensors, safetensors_files

__all__ = ["StateDictAdapter", "iter_safetensors", "safetensors_files"]
