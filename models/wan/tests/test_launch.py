"""tune_tiny.sh trains end to end on the CPU in both modes: online encoding, and extracted features
(the extraction command, then training on its shards) with the same loss curve; VARIANT=i2v extracts the
image-to-video conditions and trains the I2V DiT on them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from shardzoo.testing import run_launch_script

REPO = Path(__file__).resolve().parents[3]


def test_tune_tiny_online_and_features(tmp_path):
    steps = ["--training.max_steps", "10"]
    online, log = run_launch_script("models/wan/tune_tiny.sh", tmp_path / "online", cwd=REPO, overrides=steps)
    assert "6 videos of 192 tokens" in log and "(encoded online)" in log
    features, log = run_launch_script("models/wan/tune_tiny.sh", tmp_path / "features", cwd=REPO, overrides=steps,
                                      env={"MODE": "features"})
    assert "from features" in log
    assert [r["step"] for r in online] == [5, 10] and online[-1]["loss"] < online[0]["loss"]
    assert [r["loss"] for r in features] == pytest.approx([r["loss"] for r in online], rel=1e-6)


def test_tune_tiny_image_to_video_from_features(tmp_path):
    """The script extracts the I2V conditions (mask channels, condition latents, CLIP tokens) and trains the I2V
    DiT on them: the golden run's curve (online encoding, tests/golden/wan_i2v_cpu.json) step for step."""
    golden = json.loads((REPO / "models/wan/tests/golden/wan_i2v_cpu.json").read_text())
    records, log = run_launch_script("models/wan/tune_tiny.sh", tmp_path / "i2v", cwd=REPO, overrides=golden["config"][
        "overrides"], env={"MODE": "features", "VARIANT": "i2v"})
    assert "from features" in log
    assert [r["loss"] for r in records] == pytest.approx(golden["losses"], rel=golden["rtol"])
