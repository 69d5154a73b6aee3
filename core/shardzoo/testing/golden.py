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


# The tolerance of every package's CPU golden run. fp32 on one CPU is deterministic (bit-identical
# when repeated). Other CPUs pick other matmul kernels (AVX2 vs AVX-512 blocking), which moves fp32
# sums by ~1e-7 relative per op; compounded over 12 Adam steps that stays below 1e-5, so 2e-5
# catches any real change (a wrong mask, norm or splice moves the curve by > 1e-3).
CPU_FP32_RTOL = 2e-5
CPU_FP32_REASON = "fp32 reduction order differs between CPU kernels; bit-identical on the same machine"


class GoldenRun:
    """A model package's golden run: its tiny config trained `steps` steps on one CPU process with the
    shipped tokenizer and data, compared with (or written to) its golden file. `tokenizer` None: the
    task reads no text through model.tokenizer_name_or_path; `overrides` are added to the run's (e.g.
    the paths of encoders a test builds)."""

    def __init__(self, repo: Path, config: Path, golden: Path, *, rtol: float = CPU_FP32_RTOL,
                 rtol_reason: str = CPU_FP32_REASON, steps: int = 12, tokenizer: str | None = "data/tokenizer",
                 overrides: list[str] = ()):
        self.repo, self.config, self.golden = repo, config, golden
        self.rtol, self.rtol_reason = rtol, rtol_reason
        self.overrides = ["--training.max_steps", str(steps), "--training.logging_steps", "1",
                          "--training.progress_bar", "false", "--data.dataset_dir", str(repo / "data")]
        if tokenizer is not None:
            self.overrides += ["--model.tokenizer_name_or_path", str(repo / tokenizer)]
        self.overrides += list(overrides)

    def run(self, output_dir: Path) -> list[float]:
        from ..config import load_config
        from ..train import train

        torch.set_num_threads(2)
        cfg = load_config(self.config, self.overrides + ["--training.output_dir", str(output_dir)])
        return train(cfg).losses

    def check(self, output_dir: Path, min_drop: float = 1.0) -> list[float]:
        """Run, compare with the golden file, and require the curve to show learning (a drop of at
        least `min_drop` from the first step to the last)."""
        losses = self.run(output_dir)
        compare_golden(losses, self.golden)
        if not losses[-1] < losses[0] - min_drop:
            raise GoldenMismatch(f"{self.config.name}: the loss went {losses[0]:.4f} -> {losses[-1]:.4f}, "
                                 f"less than the required drop of {min_drop}")
        return losses

    def main(self, test_file: str | Path) -> None:
        """The test file's `__main__`: regenerate the golden file and say where it went."""
        import sys

        print(f"wrote {self.golden}: {self.regenerate(test_file)}", file=sys.stderr)

    def regenerate(self, test_file: str | Path) -> list[float]:
        """Run once and overwrite the golden file (after an intended numeric change)."""
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            losses = self.run(Path(tmp))
        write_golden(self.golden, losses, rtol=self.rtol, rtol_reason=self.rtol_reason,
                     command="python " + str(Path(test_file).resolve().relative_to(self.repo)),
                     config={"config": str(self.config.relative_to(self.repo)), "overrides": self.overrides[:6]})
        return losses
