"""Every error a user causes ends the command with one line (what, where, the fix) and exit 2, no
traceback — from `train` (one process and under torchrun, once per job), `plan`, `export` and
`new-model`. And a model whose code ships in its folder loads exactly when trust_remote_code says so."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from shardzoo.testing import training_command, training_env

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "core/tests/configs/tiny_lm.yaml"
SHORT = ["--training.max_steps", "2", "--training.progress_bar", "false", "--data.max_samples", "32",
         "--training.logging_steps", "1"]


def shardzoo(*args: str, cwd: Path = REPO, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "shardzoo", *args], capture_output=True, text=True, cwd=cwd,
                          env=training_env(env), timeout=300)


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return [line for line in proc.stderr.splitlines() if line.split(": ", 1)[0].endswith(("error", "diverged"))]


def _bad_row(tmp_path: Path) -> list[str]:
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"instruction": "a", "output": "b"}\n{"instruction": 3, "output": "b"}\n')
    return ["--data.dataset", json.dumps({"file_name": str(rows), "formatting": "alpaca"})]


def _truncated_weights(tmp_path: Path) -> list[str]:
    from safetensors.torch import save_file
    from shardzoo.testing.tiny_lm import TinyLMConfig

    model = tmp_path / "model"
    model.mkdir()
    config = TinyLMConfig(vocab_size=1024, hidden_size=64, intermediate_size=128)
    (model / "config.json").write_text(config.to_json_string())
    import torch

    save_file({"model.embed_tokens.weight": torch.zeros(1024, 64)}, str(model / "model.safetensors"))
    data = (model / "model.safetensors").read_bytes()
    (model / "model.safetensors").write_bytes(data[: len(data) // 2])
    return ["--model.model_name_or_path", str(model), "--model.train_from_scratch", "false", "--model.hf_config",
            "{}"]


CASES = {
    "malformed row": (_bad_row, "data error", "rows.jsonl:2"),
    "open pattern range": (lambda _: ["--parallel.fsdp_modules", "['model.layers.{0-}']"], "config error",
                           "parallel.fsdp_modules"),
    "freeze matches nothing": (lambda _: ["--model.freeze_modules", "['model.vision_tower']"], "config error",
                               "model.freeze_modules"),
    "npu without an npu": (lambda _: ["--training.device", "npu"], "config error", "training.device=npu"),
    "truncated weights": (_truncated_weights, "checkpoint error", "model.safetensors"),
    "output_dir a file": (lambda tmp: ["--training.output_dir", str(tmp / "file")], "config error",
                          "training.output_dir"),
    "eval_steps without rows": (lambda _: ["--training.eval_steps", "2"], "config error",
                                "training.eval_steps=2: there is nothing to evaluate"),
    "two kinds of eval rows": (lambda _: ["--data.val_size", "0.1", "--data.eval_dataset", "alpaca_sample"],
                               "config error", "data.val_size and data.eval_dataset"),
    "val_size takes every row": (lambda _: ["--data.val_size", "64"], "config error",
                                 "data.val_size=64: takes 64 of the 64 training samples"),
    "eval_dataset unknown": (lambda _: ["--data.eval_dataset", "no_such_rows"], "config error",
                             "data.eval_dataset: "),
}


@pytest.mark.parametrize("case", list(CASES))
def test_train_ends_user_errors_with_one_line(case, tmp_path):
    make, kind, names = CASES[case]
    (tmp_path / "file").write_text("")
    proc = shardzoo("train", str(CONFIG), "--training.output_dir", str(tmp_path / "out"), *SHORT, *make(tmp_path))
    (line,) = error_lines(proc)
    assert line.startswith(f"{kind}: ") and names in line, line


def test_under_torchrun_the_error_is_reported_once_per_job(tmp_path):
    cmd = training_command(CONFIG, tmp_path / "out", 2, [*SHORT, "--model.freeze_modules", "['model.nothing']"])
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, env=training_env(), timeout=300)
    assert proc.returncode != 0
    ours = [line for line in proc.stderr.splitlines() if "config error: model.freeze_modules" in line]
    assert len(ours) == 1, proc.stderr[-4000:]
    assert "shardzoo/" not in proc.stderr.split(ours[0])[0]  # no traceback of ours before it


def test_plan_export_and_new_model_end_user_errors_with_one_line(tmp_path):
    (line,) = error_lines(shardzoo("plan", str(CONFIG), "--world-size", "2", "--model.model_name_or_path",
                                   str(tmp_path)))
    assert line.startswith("config error: model.model_name_or_path") and "no config.json" in line
    (line,) = error_lines(shardzoo("export", str(tmp_path), "--format", "hf", str(tmp_path / "hf")))
    assert line.startswith("checkpoint error: ") and "neither a complete checkpoint" in line
    (line,) = error_lines(shardzoo("new-model", "Foo", "--from", "qwen3", "--models-dir", str(tmp_path)))
    assert line.startswith("config error: new-model") and "lowercase" in line


# A causal LM whose code ships in its folder (config.json's auto_map), as hub repos with custom code do.
_REMOTE_CONFIG = '''
from transformers import PretrainedConfig


class RemoteConfig(PretrainedConfig):
    model_type = "shardzoo_remote_test"

    def __init__(self, vocab_size=1024, hidden_size=32, num_hidden_layers=1, **kwargs):
        self.vocab_size, self.hidden_size, self.num_hidden_layers = vocab_size, hidden_size, num_hidden_layers
        self.num_attention_heads = 1
        super().__init__(**kwargs)
'''
_REMOTE_MODEL = '''
import torch.nn as nn
from transformers import PreTrainedModel

from .configuration_remote import RemoteConfig


class Decoder(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(nn.Linear(config.hidden_size, config.hidden_size)
                                    for _ in range(config.num_hidden_layers))

    def forward(self, input_ids, **_):
        h = self.embed_tokens(input_ids)
        for layer in self.layers:
            h = h + layer(h).tanh()
        return h


class RemoteForCausalLM(PreTrainedModel):
    config_class = RemoteConfig

    def __init__(self, config):
        super().__init__(config)
        self.model = Decoder(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        self.post_init()

    def get_decoder(self):
        return self.model

    def get_input_embeddings(self):
        return self.model.embed_tokens

    def get_output_embeddings(self):
        return self.lm_head

    def forward(self, input_ids, **kwargs):
        return self.lm_head(self.model(input_ids))
'''


def _remote_model(folder: Path) -> Path:
    folder.mkdir()
    (folder / "configuration_remote.py").write_text(_REMOTE_CONFIG)
    (folder / "modeling_remote.py").write_text(_REMOTE_MODEL)
    (folder / "config.json").write_text(json.dumps({
        "model_type": "shardzoo_remote_test", "architectures": ["RemoteForCausalLM"], "vocab_size": 1024,
        "hidden_size": 32, "num_hidden_layers": 1, "tie_word_embeddings": False,
        "auto_map": {"AutoConfig": "configuration_remote.RemoteConfig",
                     "AutoModelForCausalLM": "modeling_remote.RemoteForCausalLM"}}))
    return folder


def test_trust_remote_code_loads_the_models_own_code_and_only_then(tmp_path):
    model = _remote_model(tmp_path / "remote")
    common = ["train", str(CONFIG), *SHORT, "--model.model_id", "null", "--model.model_name_or_path", str(model),
              "--model.hf_config", "{}", "--data.packing", "false"]
    env = {"HF_MODULES_CACHE": str(tmp_path / "modules")}
    (line,) = error_lines(shardzoo(*common, "--training.output_dir", str(tmp_path / "a"), env=env))
    assert line.startswith("config error: model.trust_remote_code") and "auto_map" in line
    proc = shardzoo(*common, "--training.output_dir", str(tmp_path / "b"), "--model.trust_remote_code", "true",
                    env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "model RemoteForCausalLM | path AutoModel" in proc.stdout, proc.stdout[-2000:]
    # The FSDP2 settings in effect, the fsdp2 file's and the defaults, are in the start log.
    assert "fsdp2: 1 units + root, param fp32, reduce fp32, output as computed, cast_forward_inputs True, " \
           "reshard_after_forward True, prefetch forward 1 / backward 1, offload off, recompute 1 modules " \
           "(non-reentrant), ignored none" in proc.stderr, proc.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "loss" in r] == [1, 2]


def test_the_console_shows_a_short_step_line_and_no_bar_redraws_in_a_log(tmp_path):
    proc = shardzoo("train", str(CONFIG), "--training.output_dir", str(tmp_path), "--training.max_steps", "2",
                    "--data.max_samples", "32", "--training.logging_steps", "1", "--training.progress_bar", "true",
                    "--data.val_size", "4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    steps = [line for line in proc.stdout.splitlines() if line.startswith("step ")]
    assert len(steps) == 3, proc.stdout
    assert re.fullmatch(r"step 2 \| eval_loss \d+\.\d{4}", steps[-1]), steps[-1]  # the evaluation at the end
    assert re.fullmatch(r"step 1 \| loss \d+\.\d{4} \| lr \d\.\d\de[-+]\d\d \| grad_norm \d+\.\d{3} \| "
                        r"tokens/s [\d,]+ \| mfu \d+\.\d\d% \| mem \d+\.\d\d GiB", steps[0]), steps[0]
    assert "\r" not in proc.stderr and "train:" not in proc.stderr  # output is a pipe: no progress bar
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    record = [r for r in records if "loss" in r][-1]
    assert {"data_wait_pct", "tokens_per_s_per_device", "elapsed_s", "mfu"} <= set(record)  # the rest is here
    assert {"eval_loss", "eval_s"} <= set(records[-1])
