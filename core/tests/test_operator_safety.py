"""What an operator does to a run folder loses no work: exporting over it, a second run on it, a
rollback, stray files and symbolic links in it, a torn metrics line, leftovers of a killed tokeniser.
Trained on the core's tiny LM in one process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from shardzoo.checkpoint.layout import ABANDONED_PREFIX
from shardzoo.checkpoint.manifest import verify
from shardzoo.checkpoint.run_lock import LOCK_NAME, RunLock
from shardzoo.errors import CheckpointError, ConfigError
from shardzoo.testing import loss_curve, read_metrics, training_env

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "core/tests/configs/tiny_lm.yaml"
FAST = ["--training.logging_steps", "1", "--data.max_samples", "64", "--training.per_device_train_batch_size", "4"]


def shardzoo(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shardzoo", *args], capture_output=True, text=True, cwd=REPO,
                          env=training_env(env), timeout=timeout)


def train(out: Path, *overrides: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """One process, as `shardzoo train` (torchrun adds its own failure report to a failed run)."""
    return shardzoo("train", str(CONFIG), "--training.output_dir", str(out), "--training.progress_bar", "false",
                    *FAST, *overrides, env=env)


def one_line_error(proc: subprocess.CompletedProcess, kind: str = "config error") -> str:
    """The run failed with exit 2 and one `<kind>: ...` line, no traceback; returns that line."""
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith(f"{kind}: ")]
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run")
    proc = train(out, "--training.max_steps", "6", "--training.save_steps", "3")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _state(run_dir: Path) -> dict:
    return {p.relative_to(run_dir).as_posix(): p.stat().st_size for p in run_dir.rglob("*") if p.is_file()}


@pytest.mark.parametrize("target", ["run", "checkpoint", "inside_checkpoint", "inside_run"])
def test_export_refuses_to_write_over_training_state(run, target):
    before = _state(run)
    out = {"run": run, "checkpoint": run / "checkpoint-6", "inside_checkpoint": run / "checkpoint-6" / "export",
           "inside_run": run / "export"}[target]
    proc = shardzoo("export", str(run / "checkpoint-3"), "--format", "hf", str(out), "--overwrite")
    line = one_line_error(proc, "checkpoint error")
    assert str(out.resolve()) in line and ("a checkpoint" in line or "output_dir" in line)
    assert _state(run) == before  # nothing deleted, nothing written


def test_overwrite_replaces_only_an_earlier_export(run, tmp_path):
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "keep.txt").write_text("not an export")
    proc = shardzoo("export", str(run / "checkpoint-6"), "--format", "hf", str(mine), "--overwrite")
    assert "was not written by shardzoo export" in one_line_error(proc, "checkpoint error")
    assert (mine / "keep.txt").read_text() == "not an export"

    out = tmp_path / "hf"
    for checkpoint in ("checkpoint-3", "checkpoint-6"):  # the second replaces the first
        proc = shardzoo("export", str(run / checkpoint), "--format", "hf", str(out), "--overwrite")
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / ".shardzoo-export").is_file() and (out / "config.json").is_file()
    assert not list(tmp_path.glob(".*export*"))  # no temporary or old folder left beside it


def test_a_second_run_on_the_folder_stops_at_once_naming_the_holder(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from pathlib import Path; "
                               "from shardzoo.checkpoint.run_lock import RunLock; "
                               f"RunLock(Path({str(tmp_path)!r})).acquire(); print('held', flush=True); "
                               "time.sleep(600)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        start = time.time()
        proc = train(tmp_path, "--training.max_steps", "2")
        line = one_line_error(proc)
        assert f"pid {holder.pid}" in line and "in use by another run" in line
        assert time.time() - start < 60  # refused before data and model were built
        assert not (tmp_path / "metrics.jsonl").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # The holder died without releasing: its lock is taken over, with a warning naming it.
    proc = train(tmp_path, "--training.max_steps", "2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"taking over the run lock of {tmp_path}" in proc.stderr and f"pid {holder.pid}" in proc.stderr
    assert (tmp_path / LOCK_NAME).read_text() == ""  # released cleanly at the end


def test_lock_is_released_for_the_next_run_in_the_same_process(tmp_path):
    first = RunLock(tmp_path)
    first.acquire()
    with pytest.raises(ConfigError, match="in use by another run"):
        RunLock(tmp_path).acquire()
    first.release()
    again = RunLock(tmp_path)
    again.acquire()
    again.release()


def test_rollback_keeps_the_new_timeline(tmp_path):
    assert train(tmp_path, "--training.max_steps", "20", "--training.save_steps", "5").returncode == 0
    rolled = train(tmp_path, "--training.max_steps", "17", "--training.save_steps", "5", "--training.lr", "1e-3",
                   "--training.resume", str(tmp_path / "checkpoint-10"))
    assert rolled.returncode == 0, rolled.stderr[-3000:]
    assert "newer checkpoints of the abandoned timeline were kept" in rolled.stderr
    assert (tmp_path / "latest").read_text() == "checkpoint-17"
    # The old timeline's 15 and 20: kept under new names, out of reach of resume and pruning.
    abandoned = sorted(p.name.rsplit("-", 1)[-1] for p in tmp_path.glob(f"{ABANDONED_PREFIX}*"))
    assert abandoned == ["15", "20"]
    resumed = train(tmp_path, "--training.max_steps", "18", "--training.save_steps", "5", "--training.lr", "1e-3")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {tmp_path / 'checkpoint-17'} at step 17" in resumed.stderr


def test_files_the_manifest_does_not_list_are_an_error(run, tmp_path):
    import shutil

    ckpt = tmp_path / "checkpoint-6"
    shutil.copytree(run / "checkpoint-6", ckpt)
    shard = sorted((ckpt / "state").glob("*.safetensors"))[0]
    shutil.copy(shard, ckpt / "state" / "stray.safetensors")
    with pytest.raises(CheckpointError, match=r"state/stray.safetensors: not in the manifest"):
        verify(ckpt, 0, 1, lambda obj: [obj])
    (ckpt / "state" / "stray.safetensors").unlink()
    manifest = json.loads((ckpt / "manifest.json").read_text())
    del next(iter(manifest["files"].values()))["bytes"]
    (ckpt / "manifest.json").write_text(json.dumps(manifest))
    for rank in (0, 1):  # the same error on every rank, whichever file it checks
        with pytest.raises(CheckpointError, match="lacks an integer 'bytes'"):
            verify(ckpt, rank, 2, lambda obj: [obj])


def test_symlinked_checkpoints_are_neither_resumed_nor_pruned(run, tmp_path):
    (tmp_path / "checkpoint-100").symlink_to(run / "checkpoint-6", target_is_directory=True)
    proc = train(tmp_path, "--training.max_steps", "4", "--training.save_steps", "1", "--training.save_total_limit",
                 "1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "a symbolic link, not a checkpoint this run wrote" in proc.stderr
    assert f"resumed from {tmp_path}" not in proc.stderr
    assert (tmp_path / "checkpoint-100").is_symlink() and (run / "checkpoint-6" / "manifest.json").is_file()
    assert sorted(p.name for p in tmp_path.glob("checkpoint-*")) == ["checkpoint-100", "checkpoint-4"]


def test_a_torn_metrics_line_is_repaired_before_the_next_run_appends(run, tmp_path):
    import shutil

    shutil.copytree(run, tmp_path / "run")
    metrics = tmp_path / "run" / "metrics.jsonl"
    with open(metrics, "a") as f:
        f.write('{"step": 7, "lo')  # disk full mid-line
    proc = train(tmp_path / "run", "--training.max_steps", "7")
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = read_metrics(tmp_path / "run")  # every line parses
    assert loss_curve(records)[7] > 0 and "removed a torn last line" in proc.stderr


def test_output_dir_that_is_a_file_is_refused_before_anything_is_built(tmp_path):
    (tmp_path / "out").write_text("")
    start = time.time()
    line = one_line_error(train(tmp_path / "out", "--training.max_steps", "2"))
    assert "training.output_dir" in line and "is a file" in line
    assert time.time() - start < 60


def test_tokeniser_leftovers_of_dead_processes_are_removed(tmp_path):
    import socket

    from shardzoo.data.token_store import TokenStoreWriter

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    host = socket.gethostname()
    orphan = tmp_path / f".store.tmp-{host}-{dead.stdout.strip()}-0123abcd"
    live = tmp_path / f".store.tmp-{host}-{os.getpid()}-0123abcd"
    for path in (orphan, live):
        path.mkdir()
    with TokenStoreWriter(tmp_path / "other", vocab_size=100, with_mask=False):
        pass
    assert not orphan.exists() and live.exists()
