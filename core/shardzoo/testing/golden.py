"""Golden loss curves: a stored per-(model, device) loss list from a fixed seed, with its tolerance
and the command that regenerates it, compared step by step."""

from __future__ import annotations

import json
import math
import platform
from pathlib import Path

import torch


class GoldenMismatch(AssertionError):
    pass


def load_golden(path: str | Path) -> dict:
    return json.loads(Path(path).read_text())


def write_golden(path: str | Path, losses: list[float], *, rtol: float, rtol_reason: str, command: str,
                 config: dict) -> None:
    record = {"losses": losses, "rtol": rtol, "rtol_reason": rtol_reason, "regenerate": command,
              "torch": torch.__version__, "machine": platform.machine(), "config": config}
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(json.dumps(record, indent=1) + "\n")


def compare_golden(losses: list[float], path: str | Path) -> None:
    golden = load_golden(path)
    expected, rtol = golden["losses"], golden["rtol"]
    if len(losses) != len(expected):
        raise GoldenMismatch(f"{path}: {len(losses)} steps run, golden has {len(expected)}")
    bad = [(i + 1, got, want) for i, (got, want) in enumerate(zip(losses, expected))
           if not math.isclose(got, want, rel_tol=rtol, abs_tol=0.0)]
    if bad:
        rows = "\n".join(f"  step {s}: got {g:.8f}, golden {w:.8f}" for s, g, w in bad[:10])
        raise GoldenMismatch(f"{path}: {len(bad)} step(s) outside rtol {rtol}:\n{rows}\n"
                             f"If the change is intended, regenerate with: {golden['regenerate']}")


class GoldenRun:
    """A model package's golden run: its tiny config trained `steps` steps on one CPU process with the
    shipped tokenizer and data, compared with (or written to) its golden file."""

    def __init__(self, repo: Path, config: Path, golden: Path, *, rtol: float, rtol_reason: str, steps: int = 12,
                 tokenizer: str = "data/tokenizer"):
        self.repo, self.config, self.golden = repo, config, golden
        self.rtol, self.rtol_reason = rtol, rtol_reason
        self.overrides = ["--training.max_steps", str(steps), "--training.logging_steps", "1",
                          "--training.progress_bar", "false", "--model.tokenizer_name_or_path",
                          str(repo / tokenizer), "--data.dataset_dir", str(repo / "data")]

    def run(self, output_dir: Path) -> list[float]:
        from ..config import load_config
        from ..train import train

        torch.set_num_threads(2)
        cfg = load_config(self.config, self.overrides + ["--training.output_dir", str(output_dir)])
        return train(cfg).losses

    def regenerate(self, test_file: str | Path) -> list[float]:
        """Run once and overwrite the golden file (after an intended numeric change)."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            losses = self.run(Path(tmp))
        write_golden(self.golden, losses, rtol=self.rtol, rtol_reason=self.rtol_reason,
                     command="python " + str(Path(test_file).resolve().relative_to(self.repo)),
                     config={"config": str(self.config.relative_to(self.repo)), "overrides": self.overrides[:6]})
        return losses
