"""MindSpeed's training.profile_* keys: a torch profiler trace of the chosen steps on the chosen ranks."""

from __future__ import annotations

import copy
import json

import pytest
from shardzoo.config import ConfigError, config_from_dict
from shardzoo.train.trainer import train


def _run(minimal_raw, tmp_path, **training):
    raw = copy.deepcopy(minimal_raw)
    raw["model"]["hf_config"] = {"vocab_size": 1024, "hidden_size": 32, "intermediate_size": 64,
                                 "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2}
    raw["data"]["max_samples"] = 32
    raw["training"].update(max_steps=4, progress_bar=False, device="cpu", per_device_train_batch_size=2, **training)
    return train(config_from_dict(raw))


def test_the_trace_holds_the_steps_asked_for(minimal_raw, tmp_path):
    _run(minimal_raw, tmp_path, profile_step_start=2, profile_step_end=3, profile_record_shapes=True)
    (trace,) = (tmp_path / "out" / "profile").glob("*.json")
    assert trace.name == "rank0_steps2-3.json"
    names = {e.get("name") for e in json.loads(trace.read_text())["traceEvents"]}
    assert {"shardzoo step 2", "shardzoo step 3"} <= names
    assert not {"shardzoo step 1", "shardzoo step 4"} & names
    assert any(n and n.startswith("aten::mm") for n in names)  # the step's own ops are in it


def test_ranks_not_listed_write_nothing_and_bad_ranges_are_refused(minimal_raw, tmp_path):
    _run(minimal_raw, tmp_path, profile_step_start=1, profile_step_end=1, profile_ranks=[1])
    assert not (tmp_path / "out" / "profile").exists()
    raw = copy.deepcopy(minimal_raw)
    raw["training"].update(profile_step_start=3, profile_step_end=2)
    with pytest.raises(ConfigError, match="training.profile_step_start/profile_step_end: 3..2 is no range"):
        config_from_dict(raw)
