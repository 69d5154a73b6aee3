"""The frozen encoders: prompts become umT5 states of the true tokens zero-padded to text_len (as the
diffusers Wan pipeline does), clips become the VAE posterior means normalised per channel."""

from __future__ import annotations

from pathlib import Path

import torch
from shardzoo.data import load_tokenizer
from shardzoo_wan.encoders import TextEncoder, VideoEncoder, latent_shape
from shardzoo_wan.tiny_encoders import tiny_umt5, tiny_vae

REPO = Path(__file__).resolve().parents[3]


def test_text_states_of_true_tokens_zero_padded():
    tokenizer = load_tokenizer(str(REPO / "data/tokenizer"))
    model = tiny_umt5()
    encode = TextEncoder(model, tokenizer, text_len=24)
    prompts = ["a red square", "a blue square moves right across"]
    states = encode(prompts)
    assert states.shape == (2, 24, 16) and not any(p.requires_grad for p in model.parameters())
    for i, prompt in enumerate(prompts):
        ids = torch.tensor([tokenizer(prompt)["input_ids"]])
        n = ids.shape[1]
        alone = model(input_ids=ids).last_hidden_state[0]  # the prompt encoded on its own, unpadded
        torch.testing.assert_close(states[i, :n], alone, atol=1e-6, rtol=1e-5)
        assert states[i, n:].abs().max() == 0


def test_latents_are_normalised_posterior_means():
    vae = tiny_vae()
    clips = torch.rand(1, 3, 5, 32, 32) * 2 - 1
    latents = VideoEncoder(vae)(clips)
    mu = vae.encode(clips).latent_dist.mean
    want = (mu - torch.tensor([0.1, 0.2, -0.1, 0.0]).view(1, 4, 1, 1, 1)) / torch.tensor([1.5, 0.8, 1.2, 1.0]).view(
        1, 4, 1, 1, 1)
    assert latents.shape == (1, 4, 3, 16, 16) == (1, *latent_shape(vae.config, 5, 32, 32))
    torch.testing.assert_close(latents, want)


def test_offline_features_equal_online_encoding(tmp_path):
    import json

    from shardzoo_wan.extract import load_features, main
    from shardzoo_wan.video import load_clip

    tiny_vae().save_pretrained(tmp_path / "vae")
    tiny_umt5().save_pretrained(tmp_path / "umt5")
    args = ["--rows", str(REPO / "data/video_sample.json"), "--vae", str(tmp_path / "vae"), "--text-encoder",
            str(tmp_path / "umt5"), "--tokenizer", str(REPO / "data/tokenizer"), "--out", str(tmp_path / "features"),
            "--frames", "5", "--height", "32", "--width", "32", "--stride", "2", "--text-len", "24",
            "--shard-size", "4"]
    main(args)
    index = json.loads((tmp_path / "features/index.json").read_text())
    assert index["rows"] == 6 and [s["count"] for s in index["shards"]] == [4, 2]
    assert index["latent_shape"] == [4, 3, 16, 16]  # the tiny VAE: 4 channels, 5 frames -> 3, 32 px -> 16
    rows = json.loads((REPO / "data/video_sample.json").read_text())
    video, text = VideoEncoder(tiny_vae()), TextEncoder(tiny_umt5(), load_tokenizer(str(REPO / "data/tokenizer")), 24)
    for i in (0, 5):  # a frame folder and an MPEG-4 file, in different shards
        latents, states = load_features(tmp_path / "features", i)
        clip = load_clip(REPO / "data" / rows[i]["video"], 5, 32, 32, 2)
        torch.testing.assert_close(latents, video(clip[None])[0])
        torch.testing.assert_close(states, text([rows[i]["caption"]])[0])
    # A rerun keeps the finished shards (an interrupted extraction resumes instead of starting over).
    first = (tmp_path / "features" / index["shards"][0]["file"]).stat().st_mtime_ns
    main(args)
    assert (tmp_path / "features" / index["shards"][0]["file"]).stat().st_mtime_ns == first


def test_bad_video_rows_are_named(tmp_path):
    import pytest
    from shardzoo.data import DataError
    from shardzoo_wan.rows import read_video_rows

    (tmp_path / "a").mkdir()
    (tmp_path / "rows.jsonl").write_text('{"video": "a", "caption": "x"}\n{"video": "a"}\n'
                                         '{"video": "missing.mp4", "caption": "y"}\n')
    with pytest.raises(DataError, match=r"rows.jsonl:2: column 'caption' \(caption\) is missing"):
        read_video_rows(tmp_path / "rows.jsonl")
    rows, skipped = read_video_rows(tmp_path / "rows.jsonl", skip_bad_rows=True)
    assert [r.video for r in rows] == [tmp_path / "a"] and skipped == 2
    (tmp_path / "rows.jsonl").write_text('{"video": "missing.mp4", "caption": "y"}\n')
    with pytest.raises(DataError, match=r"rows.jsonl:1: video .*missing.mp4 does not exist"):
        read_video_rows(tmp_path / "rows.jsonl")


def test_latent_shape_of_the_released_vaes():
    """model_facts §6: Wan2.1 VAE 81 x 480 x 832 -> 16 x 21 x 60 x 104; Wan2.2 VAE (2 x 2 pixel patches,
    48 channels) 121 x 704 x 1280 -> 48 x 31 x 44 x 80 (the defaults of diffusers' AutoencoderKLWan are
    the Wan2.1 VAE; Wan2.2's config changes z_dim and patch_size)."""
    import inspect

    from diffusers import AutoencoderKLWan

    defaults = {k: p.default for k, p in inspect.signature(AutoencoderKLWan.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    assert latent_shape(defaults, 81, 480, 832) == (16, 21, 60, 104)
    assert latent_shape({**defaults, "z_dim": 48, "patch_size": 2}, 121, 704, 1280) == (48, 31, 44, 80)
    import pytest

    with pytest.raises(ValueError, match="frames = 4n \\+ 1"):
        latent_shape(defaults, 80, 480, 832)
