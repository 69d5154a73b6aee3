"""The combination matrix: features that pass alone can break together. An all-pairs set of cases
over every model and feature, each trained 2 steps on 2 gloo ranks, must end with finite losses; where
a case has an equivalence (recompute on/off, EP 2/1, CP 2/1, TP 2/1) its fp32 losses equal those of its
twin without it. Combinations that cannot work are refused before the first step with one line naming the
key (REFUSED lists them).

`nox -s matrix` runs every case (SHARDZOO_MATRIX=full); `nox -s tests` runs the first case of each
model (the default, `fast`).
"""

from __future__ import annotations

import math
import os
import re
import subprocess
from pathlib import Path

import pytest
from shardzoo.testing import read_metrics, training_command, training_env
from shardzoo.testing.pairwise import all_pairs, covers_all_pairs

REPO = Path(__file__).resolve().parents[2]
MOE = ("qwen3_moe", "gpt_oss")

FACTORS = {
    "model": ["qwen3", "qwen3_moe", "gpt_oss", "internvl", "wan"],
    "dtype": ["fp32", "bf16"],
    "recompute": ["off", "reentrant", "non-reentrant"],
    "aux_loss": [False, True],
    "head_units": [False, True],
    "ignored": [False, True],
    "frozen": [False, True],
    "reshard": [True, False],
    "prefetch": [0, 1],
    "offload": [False, True],
    "ep": [1, 2],
    "cp": [1, 2],
    "tp": [1, 2],
    "packing": [False, True],
    "accum": [1, 2],
    "loss": ["token", "square"],
}


def allowed(case: dict) -> bool:
    """Combinations a model can run; the refused ones are REFUSED's cases."""
    model = case.get("model")
    moe = model in MOE if model else True
    return not any([
        case.get("aux_loss") and not moe,
        case.get("ep") == 2 and not moe,
        case.get("aux_loss") and case.get("recompute") == "reentrant",  # refused: no aux gradient
        model == "wan" and (case.get("head_units") or case.get("packing") or case.get("loss") == "square"),
        model == "internvl" and case.get("cp") == 2,  # its plan names no attention kernels for CP
        case.get("cp") == 2 and case.get("tp") == 2,  # 4 ranks; the matrix runs on 2
        case.get("ignored") and case.get("tp") == 2,  # refused: ignored modules under TP
    ])


CASES = all_pairs(FACTORS, allowed)


class Model:
    def __init__(self, config: str, layers: list[str], embed: str | None, ignored: str, frozen: str,
                 extra: tuple[str, ...] = ()):
        self.config, self.layers, self.embed, self.ignored, self.frozen, self.extra = \
            config, layers, embed, ignored, frozen, extra


MODELS = {
    "qwen3": Model("models/qwen3/configs/tune_qwen3_tiny.yaml", ["model.layers.{*}"], "model.embed_tokens",
                   "model.norm", "model.layers.0.self_attn"),
    "qwen3_moe": Model("models/qwen3/configs/tune_qwen3_tiny.yaml", ["model.layers.{*}"], "model.embed_tokens",
                       "model.norm", "model.layers.0.self_attn",
                       ("--model.model_id", "qwen3_moe", "--model.hf_config.num_experts", "4",
                        "--model.hf_config.num_experts_per_tok", "2", "--model.hf_config.moe_intermediate_size",
                        "64", "--model.hf_config.norm_topk_prob", "true",
                        "--model.hf_config.router_aux_loss_coef", "0.01")),
    "gpt_oss": Model("models/gpt_oss/configs/tune_gpt_oss_tiny.yaml", ["model.layers.{*}"], "model.embed_tokens",
                     "model.norm", "model.layers.0.self_attn"),
    "internvl": Model("models/internvl/configs/tune_internvl_tiny.yaml",
                      ["model.vision_tower.encoder.layer.{*}", "model.language_model.layers.{*}"],
                      "model.language_model.embed_tokens", "model.vision_tower", "model.multi_modal_projector"),
    "wan": Model("models/wan/configs/tune_wan_tiny.yaml", ["blocks.{*}"], None, "condition_embedder.text_embedder",
                 "patch_embedding"),
}
GLOBAL_BATCH = 4


def overrides(case: dict, encoders: Path) -> list[str]:
    m = MODELS[case["model"]]
    dp = 2 // (case["cp"] * case["tp"])
    out = ["--training.max_steps", "2", "--training.logging_steps", "1", "--data.max_samples", "24",
           "--training.per_device_train_batch_size", str(GLOBAL_BATCH // dp),
           "--training.gradient_accumulation_steps", str(case["accum"]),
           "--parallel.param_dtype", case["dtype"], "--parallel.reduce_dtype", "fp32",
           "--parallel.recompute", str(case["recompute"] != "off").lower(),
           "--parallel.use_reentrant", str(case["recompute"] == "reentrant").lower(),
           "--parallel.reshard_after_forward", str(case["reshard"]).lower(),
           "--parallel.num_to_forward_prefetch", str(case["prefetch"]),
           "--parallel.num_to_backward_prefetch", str(case["prefetch"]),
           "--parallel.offload_to_cpu", str(case["offload"]).lower(),
           "--parallel.ep_size", str(case["ep"]), "--parallel.cp_size", str(case["cp"]),
           "--parallel.tp_size", str(case["tp"]),
           "--data.packing", str(case["packing"]).lower(), *m.extra]
    if case["model"] in MOE:
        out += ["--model.hf_config.output_router_logits", str(case["aux_loss"]).lower()]
    if case["model"] != "wan":
        out += ["--training.loss_reduction", case["loss"]]
    else:
        out += ["--task.vae", str(encoders / "vae"), "--task.text_encoder", str(encoders / "text_encoder"),
                "--task.tokenizer", str(encoders / "tokenizer")]
    if case["head_units"]:
        out += ["--parallel.fsdp_modules", str([*m.layers, m.embed, "lm_head"])]
    if case["ignored"]:
        out += ["--parallel.ignored_modules", str([m.ignored])]
    if case["frozen"]:
        out += ["--model.freeze_modules", str([m.frozen])]
    return out


def run(case: dict, out: Path, encoders: Path) -> subprocess.CompletedProcess:
    cmd = training_command(REPO / MODELS[case["model"]].config, out, 2, overrides(case, encoders))
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=training_env(), timeout=600)


def twin(case: dict) -> dict | None:
    """The same case without recompute, EP, CP and TP: equal fp32 losses (None when there is no such twin)."""
    plain = {"recompute": "off", "ep": 1, "cp": 1, "tp": 1}
    if case["dtype"] != "fp32" or all(case[k] == v for k, v in plain.items()):
        return None
    return {**case, **plain}


def case_id(case: dict) -> str:
    return "-".join(f"{k}={v}" for k, v in case.items())


def selected() -> list[dict]:
    if os.environ.get("SHARDZOO_MATRIX", "fast") == "full":
        return CASES
    first: dict[str, dict] = {}
    for case in CASES:
        first.setdefault(case["model"], case)
    return list(first.values())


# fp32: as core/tests/test_distributed.py (summation order over ranks; measured 1.5e-7 relative);
# CP and EP change which rank sums which tokens, recompute nothing.
RTOL = 1e-5
_done: dict[str, list[float]] = {}


@pytest.fixture(scope="module")
def encoders(tmp_path_factory) -> Path:
    from shardzoo_wan.tiny_encoders import save_tiny_encoders

    return save_tiny_encoders(tmp_path_factory.mktemp("wan_encoders"), REPO / "data/tokenizer")


def losses(case: dict, tmp_path_factory, encoders: Path) -> list[float]:
    key = case_id(case)
    if key not in _done:
        out = tmp_path_factory.mktemp("case")
        proc = run(case, out, encoders)
        assert proc.returncode == 0, f"{key}\n{proc.stderr[-5000:]}"
        _done[key] = [r["loss"] for r in read_metrics(out) if "loss" in r]
    return _done[key]


def test_the_cases_cover_every_allowed_pair():
    assert not covers_all_pairs(CASES, FACTORS, allowed)
    assert len(CASES) < 40  # all pairs, not the product


@pytest.mark.parametrize("case", selected(), ids=case_id)
def test_case_trains_and_matches_its_twin(case, tmp_path_factory, encoders):
    got = losses(case, tmp_path_factory, encoders)
    assert len(got) == 2 and all(math.isfinite(x) for x in got), got
    other = twin(case)
    if other is not None:
        assert got == pytest.approx(losses(other, tmp_path_factory, encoders), rel=RTOL)


REFUSED = [
    ({"model": "qwen3", "ep": 2}, r"config error: parallel.ep_size > 1 but the model declares no expert modules"),
    ({"model": "gpt_oss", "recompute": "reentrant", "aux_loss": True}, r"config error: parallel.use_reentrant"),
    ({"model": "wan", "head_units": True}, r"config error: parallel.fsdp_modules: pattern\(s\) .* match no module"),
    ({"model": "wan", "packing": True}, r"config error: data.packing: not available for Wan"),
    ({"model": "internvl", "cp": 2}, r"config error: parallel.cp_size=2: .* declares no attention kernels"),
    ({"model": "qwen3", "tp": 2, "ignored": True}, r"config error: parallel.ignored_modules with parallel.tp_size=2"),
]


@pytest.mark.parametrize("change, message", REFUSED, ids=[case_id(c) for c, _ in REFUSED])
def test_impossible_combinations_are_refused_with_one_line(change, message, tmp_path, encoders):
    base = {name: values[0] for name, values in FACTORS.items()}
    proc = run({**base, **change}, tmp_path, encoders)
    assert proc.returncode != 0 and re.search(message, proc.stderr), proc.stderr[-3000:]
    assert not (tmp_path / "metrics.jsonl").exists() or not read_metrics(tmp_path)  # before any step
