"""Scripts outside any package (benchmarks/, data/ generators) loaded as modules, so tests call their
functions instead of parsing their output."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def load_script(path: Path) -> ModuleType:
    """The file at `path` executed as a module named after it. It is registered in sys.modules first,
    because dataclasses defined in it look their module up there."""
    name = f"shardzoo_script_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
