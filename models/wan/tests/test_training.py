"""Wan flow matching through the trainer: FSDP2 on 2 gloo ranks, Ulysses CP 2 and tensor parallel 2 give
the curve of one process; training on extracted features gives the curve of online encoding; a resumed run continues
the uninterrupted curve and its export loads in diffusers."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from shardzoo.testing import loss_curve, run_training
from shardzoo_wan.tiny_encoders import extract_args, feature_overrides, task_overrides

REPO = Path(__file__).resolve().parents[3]

CONFIG = REPO / "models/wan/configs/tune_wan_tiny.yaml"
COMMON = ["--training.max_steps", "6", "--training.logging_steps", "1", "--training.progress_bar", "false"]
# Same samples and noise per step (seeded per sample), gradients summed over ranks, the loss over the
# global sample count: the runs differ in fp32 summation order only (measured: loss equal, grad norm
# <= 2e-7 relative). Another sample's noise moves a step's loss by 3e-3 to 1e-2 (measured on the tiny
# DiT), a sample counted twice in the normaliser by 50 %.
RTOL = 1e-5
GRAD_NORM_RTOL = 1e-4


def curve(records: list[dict]) -> tuple[list[float], list[float]]:
    rows = [r for r in records if "loss" in r]
    return [r["loss"] for r in rows], [r["grad_norm"] for r in rows]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, tiny_encoders):
    out = tmp_path_factory.mktemp("one")
    return curve(run_training(CONFIG, out, cwd=REPO, overrides=COMMON + task_overrides(tiny_encoders)))


LAYOUTS = {"fsdp2": ["--training.per_device_train_batch_size", "1"],
           # cp and tp: both ranks read the same 2 rows, each keeps half the video tokens (tp: half the
           # heads and FFN columns inside each block too)
           "cp2": ["--parallel.cp_size", "2"], "tp2": ["--parallel.tp_size", "2"]}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_two_ranks_equal_one_process(tmp_path, tiny_encoders, one_process, layout):
    extra = LAYOUTS[layout]
    losses, norms = curve(run_training(CONFIG, tmp_path, nproc=2, cwd=REPO, timeout=300,
                                       overrides=COMMON + task_overrides(tiny_encoders) + extra))
    assert len(losses) == 6
    assert losses == pytest.approx(one_process[0], rel=RTOL)
    assert norms == pytest.approx(one_process[1], rel=GRAD_NORM_RTOL)


@pytest.fixture(scope="module")
def features(tmp_path_factory, tiny_encoders) -> list[str]:
    """The overrides that train on the sample rows' extracted features instead of encoding online."""
    from shardzoo_wan.extract import main as extract

    out = tmp_path_factory.mktemp("features")
    extract(extract_args(tiny_encoders, REPO / "data/video_sample.json", out, "--shard-size", "4"))
    return feature_overrides(out)


def test_features_train_like_online_encoding(tmp_path, features, one_process):
    losses, _ = curve(run_training(CONFIG, tmp_path / "run", cwd=REPO, overrides=COMMON + features))
    # The VAE encodes one clip at a time in both; fp32, the same kernels: equal to 1e-6 (measured exact).
    assert losses == pytest.approx(one_process[0], rel=1e-6)


def test_text_dropout_trains_the_same_from_features(tmp_path, tiny_encoders, features, one_process):
    """Half the samples train on the empty prompt: extracted features carry the same empty prompt as online
    encoding. (That a sample's drop is its own draw, whatever the batch or the ranks, test_task.py shows.)"""
    drop = ["--task.text_drop_prob", "0.5"]
    online = curve(run_training(CONFIG, tmp_path / "online", cwd=REPO,
                                overrides=COMMON + task_overrides(tiny_encoders) + drop))
    extracted = curve(run_training(CONFIG, tmp_path / "features", cwd=REPO, overrides=COMMON + features + drop))
    # Step 1 reads the same numbers either way: its gradient is equal to the bit (measured), where another
    # empty-prompt encoding would move it by ~1e-5 (below); later steps differ by summation order (<= 1.1e-7).
    assert extracted[1][0] == online[1][0]
    assert extracted[0] == pytest.approx(online[0], rel=1e-6) and extracted[1] == pytest.approx(online[1], rel=1e-6)
    # The same sigma and noise as without dropout (the draw comes after them): step 1's loss is equal to the
    # bit, its gradient is not (a sample of step 1 drops its text). The tiny random umT5's empty prompt is
    # close to its captions, so the effect is small (1e-5 of the grad norm); that each sample's drop is its
    # own draw whatever the batch is shown exactly by test_task.py.
    assert online[0][0] == one_process[0][0] and online[1][0] != one_process[1][0]


def test_resume_continues_the_curve_and_export_loads_in_diffusers(tmp_path, tiny_encoders):
    from diffusers import WanTransformer3DModel as DiffusersWan
    from safetensors.torch import load_file

    enc = task_overrides(tiny_encoders)
    full = run_training(CONFIG, tmp_path / "full", cwd=REPO, overrides=COMMON + enc + [
        "--training.save_steps", "3", "--training.export_hf_at_end", "true"])
    resumed = run_training(CONFIG, tmp_path / "resumed", cwd=REPO, overrides=COMMON + enc + [
        "--training.resume", str(tmp_path / "full/checkpoint-3")])
    want, got = loss_curve(full), loss_curve(resumed)
    assert sorted(got) == [4, 5, 6]
    # Restored weights, optimizer, schedule, data position and per-sample noise: the same numbers.
    assert [got[s] for s in (4, 5, 6)] == [want[s] for s in (4, 5, 6)]

    export = tmp_path / "full/hf"
    assert (export / "diffusion_pytorch_model.safetensors").is_file()
    ours = load_file(str(export / "diffusion_pytorch_model.safetensors"))
    reference = DiffusersWan.from_pretrained(str(export)).eval()
    assert sorted(reference.state_dict()) == sorted(ours)
    for name, value in reference.state_dict().items():
        assert torch.equal(value, ours[name]), name
    # The trained head is no longer the zero init, so the outputs below say something.
    assert ours["proj_out.weight"].abs().max() > 0
    import json

    from shardzoo_wan import WanTransformer3DModel
    from shardzoo_wan.configuration_wan import WanConfig

    mine = WanTransformer3DModel(WanConfig.from_dict(json.loads((export / "config.json").read_text())))
    mine.load_state_dict(ours)
    latents, text = torch.randn(1, 4, 3, 16, 16), torch.randn(1, 24, 16)
    t = torch.tensor([500.0])
    with torch.no_grad():
        torch.testing.assert_close(mine(latents, t, text), reference(latents, t, text, return_dict=False)[0])


def test_evaluation_leaves_training_alone_and_is_exact_over_ranks(tmp_path, tiny_encoders, one_process):
    # Each evaluation row's sigma and noise come from its own seeded generator (the same at every
    # evaluation), and nothing of training is drawn: the training curve is the one without evaluation.
    evaluation = ["--data.eval_dataset", "video_sample", "--training.eval_steps", "3"]
    enc = task_overrides(tiny_encoders)
    single = run_training(CONFIG, tmp_path / "one", cwd=REPO, overrides=COMMON + enc + evaluation)
    assert curve(single) == one_process
    evals = {r["step"]: r["eval_loss"] for r in single if "eval_loss" in r}
    assert sorted(evals) == [3, 6] and evals[6] < evals[3]
    two = run_training(CONFIG, tmp_path / "two", nproc=2, cwd=REPO, timeout=300, overrides=COMMON + enc + evaluation
                       + ["--training.per_device_train_batch_size", "1", "--parallel.cp_size", "1"])
    # Same tolerance as the curves above: the ranks' weights and sums differ in the last bits only.
    assert [r["eval_loss"] for r in two if "eval_loss" in r] == pytest.approx([evals[3], evals[6]], rel=RTOL)


I2V_CONFIG = REPO / "models/wan/configs/tune_wan_i2v_tiny.yaml"


def test_image_to_video_trains_alike_from_features_and_split_by_heads(tmp_path, tiny_encoders):
    """Wan2.1-style I2V (first-frame mask and condition latents, CLIP tokens in every cross-attention): extracted
    features give the curve of online encoding, and tensor parallel 2 (the image keys and values split by
    heads, the image tokens on every rank) the curve of one process."""
    from shardzoo_wan.extract import main as extract

    online = curve(run_training(I2V_CONFIG, tmp_path / "online", cwd=REPO,
                                overrides=COMMON + task_overrides(tiny_encoders, image=True)))
    out = tmp_path / "features"
    extract(extract_args(tiny_encoders, REPO / "data/video_sample.json", out, image=True))
    features = feature_overrides(out, image=True)
    extracted = curve(run_training(I2V_CONFIG, tmp_path / "run", cwd=REPO, overrides=COMMON + features))
    # As for T2V: one clip at a time through the same encoders in fp32 (measured exact).
    assert extracted[0] == pytest.approx(online[0], rel=1e-6)
    split = curve(run_training(I2V_CONFIG, tmp_path / "tp2", nproc=2, cwd=REPO, timeout=300,
                               overrides=COMMON + features + ["--parallel.tp_size", "2"]))
    assert split[0] == pytest.approx(online[0], rel=RTOL) and split[1] == pytest.approx(online[1], rel=GRAD_NORM_RTOL)
