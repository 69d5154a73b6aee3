"""Accelerator names live in the device layer: nothing else may say "cuda" / "nccl" or call .cuda(),
so that an NPU run goes through the same lines (the device layer maps npu / cuda / cpu to hccl /
nccl / gloo, allocators, memory statistics). Allowed: core/shardzoo/device.py and the op backends
under core/shardzoo/ops/ (a CUDA backend names its device). Tests may name devices (to skip)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = re.compile(r"""["']cuda|["']nccl|\.cuda\(|torch\.cuda\.""")
ALLOWED = ("core/shardzoo/device.py", "core/shardzoo/ops/")


def source_files():
    for path in sorted(ROOT.glob("**/*.py")):
        rel = path.relative_to(ROOT).as_posix()
        parts = rel.split("/")
        if "tests" in parts or any(p.startswith(".") for p in parts) or rel.startswith(ALLOWED):
            continue
        if parts[0] in ("core", "models", "benchmarks", "scripts", "data"):
            yield rel, path


def test_no_accelerator_names_outside_the_device_layer():
    offences = [f"{rel}:{n}: {line.strip()}" for rel, path in source_files()
                for n, line in enumerate(path.read_text().splitlines(), 1) if FORBIDDEN.search(line)]
    assert not offences, "use shardzoo.device instead of naming the accelerator:\n" + "\n".join(offences)


def test_the_scan_sees_the_packages():
    files = {rel for rel, _ in source_files()}
    assert "core/shardzoo/train/trainer.py" in files and "models/qwen3/shardzoo_qwen3/modeling_qwen3.py" in files
    assert not any(f.startswith("core/shardzoo/ops/") for f in files)
