"""Scaffold a model package from a template into a repository-shaped temporary tree, install it beside
(not into) the test environment, and run its own tests: what `shardzoo new-model` promises a user."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

SHARED_FOLDERS = ("data", "scripts", "core")
"""What a package's tests and launch scripts reach outside their folder (by path from the repo root)."""


@dataclass
class Scaffolded:
    root: Path
    """The repository-shaped tree: models/<template> (linked), models/<name> (the copy), shared folders."""
    package: Path
    env: dict[str, str]
    """The environment in which the copy is installed (PYTHONPATH to its own site folder)."""


def scaffold(repo: Path, template: str, name: str, tmp: Path) -> Scaffolded:
    """`shardzoo new-model <name> --from <template>` in a tree shaped like `repo`; raises with the output."""
    root = tmp / "repo"
    (root / "models").mkdir(parents=True)
    (root / "models" / template).symlink_to(repo / "models" / template)
    for shared in SHARED_FOLDERS:
        (root / shared).symlink_to(repo / shared)
    _run([sys.executable, "-m", "shardzoo", "new-model", name, "--from", template], cwd=root, timeout=120)
    package = root / "models" / name
    # Installed into a folder of its own, so the test environment's registry is left as it was.
    site = tmp / "site"
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    _run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", *isolation, "--target", str(site),
          str(package)], cwd=root, timeout=300)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    return Scaffolded(root, package, env)


def run_tests(made: Scaffolded, tests: list[str] | None = None, timeout: int = 1800) -> subprocess.CompletedProcess:
    """pytest on the copy's tests (its whole tests/ folder by default), from the tree's root."""
    targets = tests or [str(made.package.relative_to(made.root) / "tests")]
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", *targets],
                          cwd=made.root, env=made.env, capture_output=True, text=True, timeout=timeout)


def _run(cmd: list[str], cwd: Path, timeout: int) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}\n"
                           f"{proc.stderr[-3000:]}")
