import copy

import pytest
import yaml
from shardzoo.config import (
    ConfigError,
    apply_overrides,
    config_from_dict,
    load_config,
    validate_paths,
)


def build(raw):
    return config_from_dict(copy.deepcopy(raw))


def test_valid_config_builds_with_defaults(minimal_raw):
    cfg = build(minimal_raw)
    assert cfg.training.lr == 1e-5 and cfg.parallel.param_dtype == "bf16"
    assert cfg.parallel.fsdp_modules is None  # the model package's plan decides
    validate_paths(cfg)


@pytest.mark.parametrize("section,key,suggestion", [
    ("training", "learning_rate", None), ("training", "max_step", "max_steps"), ("parallel", "fsdp_sise", "fsdp_size"),
])
def test_unknown_key_is_named_with_suggestion(minimal_raw, section, key, suggestion):
    minimal_raw.setdefault(section, {})[key] = 1
    with pytest.raises(ConfigError, match=rf"{section}\.{key}: unknown key") as err:
        build(minimal_raw)
    if suggestion:
        assert f"did you mean {suggestion!r}" in str(err.value)


def test_unknown_section(minimal_raw):
    minimal_raw["trainer"] = {}
    with pytest.raises(ConfigError, match="trainer: unknown key; did you mean 'training'"):
        build(minimal_raw)


@pytest.mark.parametrize("section,key,value,message", [
    ("training", "lr", "fast", "training.lr: expected a number"),
    ("training", "per_device_train_batch_size", 1.5, "expected an integer"),
    ("training", "seed", True, "training.seed: expected an integer"),
    ("parallel", "reshard_after_forward", "yes", "expected true or false"),
    ("parallel", "param_dtype", "fp8", "param_dtype: 'fp8' is not allowed"),
    ("training", "lr_scheduler_type", "step", "lr_scheduler_type: 'step' is not allowed"),
    ("parallel", "fsdp_modules", [1], r"parallel.fsdp_modules: expected list of str or null"),
    ("parallel", "fsdp_size", "all", "parallel.fsdp_size: expected"),
])
def test_wrong_type_names_key(minimal_raw, section, key, value, message):
    minimal_raw.setdefault(section, {})[key] = value
    with pytest.raises(ConfigError, match=message):
        build(minimal_raw)


@pytest.mark.parametrize("section,key,value,message", [
    ("training", "min_lr", 1.0, "training.min_lr"),
    ("training", "warmup_ratio", 1.5, "training.warmup_ratio"),
    ("training", "max_steps", 0, "training.max_steps"),
    ("training", "save_steps", -1, "training.save_steps: -1 must be >= 0"),
    ("training", "save_total_limit", 0, "training.save_total_limit: 0 must be >= 1"),
    ("training", "export_dtype", "int8", "training.export_dtype"),
    ("parallel", "ep_size", 0, r"parallel.ep_size: 0 must be >= 1"),
    ("parallel", "ep_fsdp_size", 0, r"parallel.ep_fsdp_size: 0 must be >= 1"),
    ("parallel", "ep_modules", [], "parallel.ep_modules: must name"),
    ("parallel", "cp_size", 0, "parallel.cp_size: 0 must be >= 1"),
    ("parallel", "cp_modules", [], r"parallel.cp_modules: must name .*self_attn.core_attention"),
    ("parallel", "tp_size", 0, "parallel.tp_size: 0 must be >= 1"),
    ("parallel", "tp_colwise", [], "parallel.tp_colwise: must name"),
    ("parallel", "fsdp_modules", [], "parallel.fsdp_modules: must name"),
])
def test_impossible_values(minimal_raw, section, key, value, message):
    minimal_raw.setdefault(section, {})[key] = value
    with pytest.raises(ConfigError, match=message):
        build(minimal_raw)


def test_missing_required(minimal_raw):
    del minimal_raw["training"]["output_dir"]
    with pytest.raises(ConfigError, match="training.output_dir: missing"):
        build(minimal_raw)
    raw = copy.deepcopy(minimal_raw)
    raw["training"]["output_dir"] = "x"
    del raw["model"]["hf_config"]
    with pytest.raises(ConfigError, match="model.model_name_or_path: missing"):
        build(raw)


def test_missing_paths(minimal_raw, tmp_path):
    raw = copy.deepcopy(minimal_raw)
    raw["model"]["tokenizer_name_or_path"] = str(tmp_path / "nope")
    with pytest.raises(ConfigError, match="model.tokenizer_name_or_path: .*nope has no tokenizer"):
        validate_paths(build(raw))
    raw = copy.deepcopy(minimal_raw)
    raw["model"]["model_name_or_path"] = str(tmp_path / "no_model")
    with pytest.raises(ConfigError, match="model.model_name_or_path: .*no_model is not a directory"):
        validate_paths(build(raw))
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text("{}")
    raw["model"]["model_name_or_path"] = str(tmp_path / "m")
    raw["model"]["train_from_scratch"] = False
    with pytest.raises(ConfigError, match=r"has no \*.safetensors weights"):
        validate_paths(build(raw))
    with pytest.raises(ConfigError, match="config: file .*missing.yaml does not exist"):
        load_config(tmp_path / "missing.yaml")
    raw = copy.deepcopy(minimal_raw)
    raw["training"]["resume"] = str(tmp_path / "checkpoint-9")
    with pytest.raises(ConfigError, match="training.resume: .*checkpoint-9 is not a directory"):
        validate_paths(build(raw))


def test_overrides_are_typed(minimal_raw):
    raw = apply_overrides(copy.deepcopy(minimal_raw), ["--training.lr", "3e-4", "--parallel.fsdp_modules=['a.{*}', b]",
                                                       "--training.max_steps=7"])
    cfg = build(raw)
    assert cfg.training.lr == 3e-4 and cfg.training.max_steps == 7
    assert cfg.parallel.fsdp_modules == ["a.{*}", "b"]
    with pytest.raises(ConfigError, match="override --parallel.fsdp_modules: .* is not a YAML value"):
        apply_overrides({}, ["--parallel.fsdp_modules", "[a.{*}]"])
    with pytest.raises(ConfigError, match="override --training.lr: missing value"):
        apply_overrides({}, ["--training.lr"])
    with pytest.raises(ConfigError, match="override --trainig: unknown key; did you mean 'training'"):
        apply_overrides({}, ["--trainig.lr", "1"])
    with pytest.raises(ConfigError, match="training.lr: expected a number"):
        build(apply_overrides(copy.deepcopy(minimal_raw), ["--training.lr", "[1]"]))


def test_hf_config_keys_are_overridable(minimal_raw):
    raw = apply_overrides(copy.deepcopy(minimal_raw), ["--model.hf_config.num_key_value_heads", "1",
                                                       "--model.hf_config.hidden_size=64"])
    assert build(raw).model.hf_config == {"vocab_size": 1024, "hidden_size": 64, "num_key_value_heads": 1}
    assert apply_overrides({}, ["--model.hf_config.vocab_size", "8"]) == {"model": {"hf_config": {"vocab_size": 8}}}
    with pytest.raises(ConfigError, match=r"override --training.lr.x: expected exactly --section.key"):
        apply_overrides({}, ["--training.lr.x", "1"])
    # A vision-language config nests its language model's: deeper keys reach it, the rest stays.
    nested = {"model": {"hf_config": {"text_config": {"hidden_size": 64, "vocab_size": 8}}}}
    assert apply_overrides(nested, ["--model.hf_config.text_config.hidden_size", "128",
                                    "--model.hf_config.vision_config.patch_size", "14"])["model"]["hf_config"] == {
        "text_config": {"hidden_size": 128, "vocab_size": 8}, "vision_config": {"patch_size": 14}}
    with pytest.raises(ConfigError, match=r"text_config.hidden_size is 128, not a mapping"):
        apply_overrides(nested, ["--model.hf_config.text_config.hidden_size.x", "1"])


def test_fsdp2_file_keys_and_aliases(minimal_raw, tmp_path):
    (tmp_path / "fsdp2.yaml").write_text(yaml.safe_dump({
        "sharding_size": 2, "sub_modules_to_wrap": ["model.layers.{0-3}"], "param_dtype": "bf16",
        "reduce_dtype": "fp32", "output_dtype": "bf16", "cast_forward_inputs": False, "ignored_modules": [],
        "recompute_modules": ["model.layers.{*}"], "use_reentrant": True, "reshard_after_forward": False,
        "offload_to_cpu": False, "pin_memory": False, "num_to_forward_prefetch": 2, "num_to_backward_prefetch": 1}))
    raw = copy.deepcopy(minimal_raw)
    raw["parallel"] = {"fsdp2_config": "fsdp2.yaml"}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(raw))
    cfg = load_config(tmp_path / "train.yaml")
    p = cfg.parallel
    assert (p.fsdp_size, p.fsdp_modules) == (2, ["model.layers.{0-3}"])
    assert (p.num_to_forward_prefetch, p.use_reentrant) == (2, True)
    assert p.recompute is None and p.recompute_modules == ["model.layers.{*}"]
    raw["parallel"]["fsdp_size"] = 4
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="parallel.sharding_size .* and parallel.fsdp_size .* name the same setting"):
        load_config(tmp_path / "train.yaml")
    raw["parallel"] = {"fsdp2_config": "missing.yaml"}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="parallel.fsdp2_config: file .*missing.yaml does not exist"):
        load_config(tmp_path / "train.yaml")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump({"sharding_sise": 2}))
    raw["parallel"] = {"fsdp2_config": "bad.yaml"}
    (tmp_path / "train.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="parallel.sharding_sise: unknown key"):
        load_config(tmp_path / "train.yaml")


def test_shipped_configs_load(repo):
    for path in sorted(repo.glob("models/*/configs/tune_*.yaml")):
        load_config(path)


@pytest.mark.parametrize("data,training,message", [
    ({"val_size": 0.1, "streaming": True}, {"max_steps": 2}, "data.val_size: a streamed dataset has no rows to split"),
    ({"val_size": -1}, {}, "data.val_size: -1 must be a fraction"),
    ({"val_size": 2.5}, {}, "data.val_size: 2.5 is neither a fraction below 1 nor a whole count"),
    ({}, {"per_device_eval_batch_size": 0}, "training.per_device_eval_batch_size: must be >= 1"),
])
def test_evaluation_settings_that_cannot_work(minimal_raw, data, training, message):
    minimal_raw["data"].update(data)
    minimal_raw["training"].update(training)
    with pytest.raises(ConfigError, match=message):
        build(minimal_raw)
