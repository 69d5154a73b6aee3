"""A MindSpeed user's config runs as their docs write it: the data loader's keys under training:,
flags written 1/0, None for unset, `template: gpt`, trailing tabs in a copied fsdp2 file; and what is
not available is refused, never ignored."""

from __future__ import annotations

import copy
import os

import pytest
import yaml
from shardzoo.config import ConfigError, config_from_dict, load_config
from shardzoo.data.sft import template_of
from shardzoo.device import dist_backend


def test_data_loader_keys_under_training_with_flags_written_1_or_0(minimal_raw):
    raw = copy.deepcopy(minimal_raw)
    raw["training"].update(dataloader_num_workers=2, disable_shuffling=1, dataloader_drop_last=0)
    cfg = config_from_dict(raw)
    assert (cfg.data.dataloader_num_workers, cfg.data.disable_shuffling, cfg.data.dataloader_drop_last) == \
        (2, True, False)
    raw["data"]["disable_shuffling"] = True  # the same setting in both places
    with pytest.raises(ConfigError, match=r"training.disable_shuffling \(1\) and data.disable_shuffling \(True\) "
                       "name the same setting; keep only data.disable_shuffling"):
        config_from_dict(raw)
    raw = copy.deepcopy(minimal_raw)
    raw["training"]["progress_bar"] = 2
    with pytest.raises(ConfigError, match=r"training.progress_bar: expected true or false \(or 1 / 0\), got 2"):
        config_from_dict(raw)


def test_none_means_unset_and_gpt_is_the_harmony_template(minimal_raw):
    raw = copy.deepcopy(minimal_raw)
    raw["model"]["tokenizer_name_or_path"] = "None"
    raw["data"].update(template="gpt", max_samples="None")
    cfg = config_from_dict(raw)
    assert cfg.model.tokenizer_name_or_path is None and cfg.data.max_samples is None
    assert template_of(cfg.data) is template_of(config_from_dict({**raw, "data": {**raw["data"],
                                                                                "template": "gpt_oss"}}).data)


def test_a_copied_fsdp2_file_with_trailing_tabs_loads(minimal_raw, tmp_path):
    (tmp_path / "fsdp2.yaml").write_text("sharding_size: auto\t\nparam_dtype: bf16  \t\nsub_modules_to_wrap:\t\n"
                                         "  - model.layers.{*}\t\nuse_reentrant: false\t\n")
    raw = copy.deepcopy(minimal_raw)
    raw["parallel"] = {"fsdp2_config": "fsdp2.yaml"}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(raw))
    p = load_config(tmp_path / "train.yaml").parallel
    assert (p.fsdp_size, p.param_dtype, p.fsdp_modules, p.use_reentrant) == ("auto", "bf16", ["model.layers.{*}"],
                                                                             False)


@pytest.mark.parametrize("dispatcher", ["mc2", "fused"])
def test_a_dispatcher_without_expert_parallel_is_refused(minimal_raw, dispatcher):
    raw = copy.deepcopy(minimal_raw)
    raw["parallel"] = {"ep_dispatcher": dispatcher}
    with pytest.raises(ConfigError, match=f"parallel.ep_dispatcher={dispatcher}: .* parallel.ep_size is 1"):
        config_from_dict(raw)


def test_offload_gets_a_process_group_that_also_serves_cpu_tensors():
    assert dist_backend("npu", cpu_tensors=True) == "npu:hccl,cpu:gloo"
    assert dist_backend("cuda", cpu_tensors=True) == "cuda:nccl,cpu:gloo"
    assert dist_backend("cpu", cpu_tensors=True) == "gloo" and dist_backend("npu") == "hccl"


def test_missing_dataset_info_names_the_folder_searched_and_the_key(tmp_path, monkeypatch):
    from shardzoo.config import DataConfig
    from shardzoo.data.dataset_info import resolve_sources

    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=rf"data.dataset_dir: looked for dataset_info.json in {tmp_path}/data "
                       r"\(data.dataset_dir is 'data', relative to the current directory .*\) and found none; set "
                       "data.dataset_dir"):
        resolve_sources(DataConfig(dataset="alpaca_sample"))
    assert os.getcwd() == str(tmp_path)
