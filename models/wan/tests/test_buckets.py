"""Size buckets: a clip goes to the bucket nearest its shape that its frames fit, the rows that fit none are named
(or skipped), and a run over clips of three sizes trains the same on one process, on two ranks and from
features extracted with the same buckets; the plan is sized by the largest bucket."""

from __future__ import annotations

from pathlib import Path

import pytest
from shardzoo.config import ConfigError, config_from_dict
from shardzoo.errors import DataError
from shardzoo.testing import run_training
from shardzoo_wan.buckets import Bucket, parse_buckets, pick_bucket
from shardzoo_wan.tiny_encoders import extract_args, feature_overrides, task_overrides

REPO = Path(__file__).resolve().parents[3]
CONFIG = REPO / "models/wan/configs/tune_wan_tiny.yaml"
# data/video_buckets_sample.json: 6 landscape clips of 9 frames (64 x 48), 2 portrait (48 x 64, 9 frames) and
# 2 short landscape ones (3 frames); at frame_stride 2 the short ones fit only the single-frame bucket.
BUCKETS = ["5x32x40", "5x40x32", "1x32x40"]
ROWS = {0: 6, 1: 2, 2: 2}


def test_a_clip_takes_the_nearest_aspect_it_has_the_frames_for():
    buckets = parse_buckets(["81x480x832", "81x832x480", "49x480x832", "17x480x480"])
    assert pick_bucket(200, 720, 1280, buckets, stride=1) == 0  # 16:9 landscape: the longest of its aspect
    assert pick_bucket(200, 1280, 720, buckets, stride=1) == 1
    assert pick_bucket(60, 720, 1280, buckets, stride=1) == 2  # too short for 81 frames
    assert pick_bucket(60, 720, 1280, buckets, stride=2) == 3  # 49 frames 2 apart need 97: only 17 fit
    assert pick_bucket(16, 720, 1280, buckets, stride=1) is None
    assert pick_bucket(100, 500, 500, buckets, stride=1) == 3  # square
    assert Bucket(81, 480, 832).source_frames(2) == 161


@pytest.mark.parametrize("specs,message", [
    (["81x480"], r"task.buckets\[0\]: '81x480' is not FRAMESxHEIGHTxWIDTH"),
    (["81x480x832", "80x480x832"], r"task.buckets\[1\]: 80x480x832: frames must be 4n \+ 1"),
    (["81x480x832", "81x480x832"], r"task.buckets\[1\]: 81x480x832 is listed twice"),
    ([], "task.buckets: empty"),
])
def test_bucket_specs_are_checked_by_name(specs, message):
    with pytest.raises(ConfigError, match=message):
        parse_buckets(specs)


def data_config(tiny_encoders, buckets, **sections):
    raw = {"model": {"model_id": "wan", "train_from_scratch": True, "hf_config": {"num_layers": 1}},
           "data": {"dataset": "video_buckets_sample", "dataset_dir": str(REPO / "data")},
           "training": {"output_dir": "/tmp/unused", "per_device_train_batch_size": 2},
           "task": {"vae": str(tiny_encoders / "vae"), "text_encoder": str(tiny_encoders / "text_encoder"),
                    "tokenizer": str(tiny_encoders / "tokenizer"), "frame_stride": 2, "buckets": buckets}}
    for name, values in sections.items():
        raw.setdefault(name, {}).update(values)
    return config_from_dict(raw)


def build(cfg):
    from shardzoo_wan import tiny_config
    from shardzoo_wan.task import FlowMatchingTask

    return FlowMatchingTask.build_data(cfg, None, tiny_config(), rank=0, world=1, local_rank=0, barrier=None,
                                       cp_rank=0, cp_size=cfg.parallel.cp_size)


def test_rows_take_their_buckets_and_misfits_are_named_or_skipped(tiny_encoders):
    data = build(data_config(tiny_encoders, BUCKETS))
    assert data.describe().startswith("10 videos in buckets of latents 3x16x20: 6 (240 tokens), 3x20x16: 2 (240 "
                                      "tokens), 1x16x20: 2 (80 tokens)")
    assert data.tokens_per_sample == 240 and data.loader.steps_per_epoch == 3 + 1 + 1
    with pytest.raises(DataError, match=r"video_buckets_sample.json\[row 8\]: its video has 3 frames, fewer than any "
                                        r"bucket needs \(the shortest, 5x32x40, needs 9 at frame_stride 2\)"):
        build(data_config(tiny_encoders, ["5x32x40"]))
    skipping = build(data_config(tiny_encoders, ["5x32x40"], data={"skip_bad_rows": True}))
    assert (skipping.rows, skipping.skipped()) == (8, 2)
    with pytest.raises(ConfigError, match=r"task.buckets\[0\]: latents \[4, 3, 18, 20\] make 270 video tokens, "
                                          r"which do not split over cp_size x tp_size = 4 ranks"):
        build(data_config(tiny_encoders, ["5x36x40"], parallel={"cp_size": 4}))
    with pytest.raises(ConfigError, match=r"task.buckets\[0\]: video size 5 x 33 x 40: the Wan VAE needs"):
        build(data_config(tiny_encoders, ["5x33x40"]))


def test_the_plan_is_sized_by_the_largest_bucket(tiny_encoders):
    from shardzoo_wan.task import latent_shape_of

    assert latent_shape_of(data_config(tiny_encoders, ["1x32x40", "5x40x32"])) == (4, 3, 20, 16)


COMMON = ["--training.max_steps", "6", "--training.logging_steps", "1", "--training.progress_bar", "false",
          "--data.dataset", "video_buckets_sample", "--task.buckets", f"[{', '.join(BUCKETS)}]"]


def test_buckets_train_alike_on_two_ranks_and_from_features(tmp_path, tiny_encoders):
    """Each step from one bucket, the same steps for any split: 2 ranks of batch 1 give one process's curve
    (batch 2), and features extracted with the same buckets give the online curve."""
    from shardzoo_wan.extract import main as extract

    def losses(records):
        return [r["loss"] for r in records if "loss" in r]

    online = run_training(CONFIG, tmp_path / "one", cwd=REPO, overrides=COMMON + task_overrides(tiny_encoders))
    two = run_training(CONFIG, tmp_path / "two", nproc=2, cwd=REPO, timeout=300, overrides=COMMON + task_overrides(
        tiny_encoders) + ["--training.per_device_train_batch_size", "1"])
    # fp32 summation order apart (the two-rank curves of test_training.py: 1e-5).
    assert len(losses(online)) == 6 and losses(two) == pytest.approx(losses(online), rel=1e-5)
    # Steps of both sizes came: 2 samples of 240 or of 80 video tokens (the throughput counts each step's own).
    assert {round(r["tokens_per_s"] * r["elapsed_s"]) for r in online} == {480, 160}
    out = tmp_path / "features"
    extract(extract_args(tiny_encoders, REPO / "data/video_buckets_sample.json", out, buckets=tuple(BUCKETS)))
    features = feature_overrides(out) + ["--task.buckets", "null"]
    extracted = run_training(CONFIG, tmp_path / "f", cwd=REPO, overrides=COMMON[:-2] + features)
    assert losses(extracted) == pytest.approx(losses(online), rel=1e-6)
