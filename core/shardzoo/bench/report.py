"""What every result file carries (hardware, commit, torch, date) and how it is written: JSON for
machines, a markdown table for people, side by side under the same stem."""

from __future__ import annotations

import datetime
import json
import platform
import re
import subprocess
from pathlib import Path
from typing import Any, Sequence

import torch

from ..device import PEAK_BF16_FLOPS, device_module, device_name


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware(device_type: str) -> tuple[str, str]:
    """(description, short name for file names): the CPU model and threads torch uses, or the
    accelerator's name and count."""
    if device_type == "cpu":
        return f"{cpu_model()}, {torch.get_num_threads()} threads", "cpu"
    name = device_name(device_type)
    count = device_module(device_type).device_count()
    known = [key for key in sorted(PEAK_BF16_FLOPS, key=len, reverse=True) if key in name]
    short = known[0] if known else name
    return f"{count} x {name} (one used)", re.sub(r"[^a-z0-9]+", "-", short.lower()).strip("-")


def git_commit(cwd: Path | None = None) -> str:
    """Short commit of the checkout, with `-dirty` when tracked files differ from it (a figure from
    uncommitted code must say so); `unknown` outside git."""
    try:
        run = dict(cwd=cwd, capture_output=True, text=True, check=True, timeout=10)
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], **run).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], **run).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("-dirty" if dirty else "")


def environment(device_type: str) -> dict[str, Any]:
    description, short = hardware(device_type)
    return {"hardware": description, "hardware_short": short, "device_type": device_type,
            "torch": torch.__version__, "python": platform.python_version(),
            "commit": git_commit(Path(__file__).parent), "date": datetime.date.today().isoformat()}


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def settings_table(settings: dict[str, Any]) -> str:
    return markdown_table(["setting", "value"], [(key, f"`{value}`") for key, value in settings.items()])


def write(directory: Path, stem: str, result: dict[str, Any], markdown: str) -> tuple[Path, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    json_path, md_path = directory / f"{stem}.json", directory / f"{stem}.md"
    json_path.write_text(json.dumps(result, indent=1) + "\n")
    md_path.write_text(markdown.rstrip() + "\n")
    return json_path, md_path


def fmt(value: float, digits: int = 3) -> str:
    """Figures for tables: 3 significant digits, large and small values in e-notation."""
    if value == 0 or 1e-3 <= abs(value) < 1e5:
        return f"{value:.{digits}g}"
    return f"{value:.{digits - 1}e}"
