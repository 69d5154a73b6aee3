"""`shardzoo new-model <name> --from qwen3`: the copy is renamed everywhere it names ours and nowhere it
names the reference, installs, and its parity, golden-loss and checkpoint-discovery tests pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from shardzoo.config import ConfigError
from shardzoo.scaffold import Rename, new_model, template_class_prefix, vendor_names
from shardzoo.testing.scaffolded import run_tests, scaffold

REPO = Path(__file__).resolve().parents[1]


def test_rename_spares_the_reference_and_the_chat_template():
    text = ("from transformers import Qwen3Config, Qwen3ForCausalLM as HFQwen3\n"
            "class Qwen3Model(Qwen3Base):\n"
            "    def __init__(self, config: Qwen3Config): ...\n"
            'SPEC = ModelSpec(name="qwen3_moe", architectures=("Qwen3MoeForCausalLM",), model_types=("qwen3",))\n'
            "x = transformers.models.qwen3.modeling_qwen3.Qwen3RMSNorm\n"
            "  template: qwen3\n"
            "  tokenizer_name_or_path: data/tokenizer_qwen3\n"
            "output_dir: outputs/qwen3_tiny  # Qwen3-8B, shardzoo_qwen3, shardzoo-qwen3, QWEN3_HOME\n")
    out = Rename("qwen3", "foo", "Qwen3", "Foo").text(text, vendor_names(text))
    assert out.splitlines() == [
        "from transformers import Qwen3Config, Qwen3ForCausalLM as HFQwen3",
        "class FooModel(FooBase):",
        "    def __init__(self, config: Qwen3Config): ...",
        'SPEC = ModelSpec(name="foo_moe", architectures=("FooMoeForCausalLM",), model_types=("foo",))',
        "x = transformers.models.qwen3.modeling_qwen3.Qwen3RMSNorm",
        "  template: qwen3",
        "  tokenizer_name_or_path: data/tokenizer_qwen3",
        "output_dir: outputs/foo_tiny  # Foo-8B, shardzoo_foo, shardzoo-foo, FOO_HOME"]


def test_template_class_prefix_is_read_from_the_code():
    assert template_class_prefix(REPO / "models/qwen3/shardzoo_qwen3", "qwen3") == "Qwen3"
    assert template_class_prefix(REPO / "models/gpt_oss/shardzoo_gpt_oss", "gpt_oss") == "GptOss"
    assert template_class_prefix(REPO / "models/internvl/shardzoo_internvl", "internvl") == "InternVL"


def test_refusals_name_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="lowercase Python identifier"):
        new_model("My-Model", "qwen3", REPO / "models")
    with pytest.raises(ConfigError, match="templates in .*: gpt_oss, internvl, qwen3, wan"):
        new_model("foo", "llama", REPO / "models")
    with pytest.raises(ConfigError, match="already exists"):
        new_model("wan", "qwen3", REPO / "models")


def test_scaffolded_package_installs_and_passes_its_tests(tmp_path):
    made = scaffold(REPO, "qwen3", "foo", tmp_path)
    package = made.package
    assert (package / "shardzoo_foo" / "modeling_foo.py").is_file()
    assert (package / "configs" / "tune_foo_tiny.yaml").is_file() and (package / "tests/golden/foo_cpu.json").is_file()
    assert not (package / "benchmarks" / "results").exists()  # the template's measurements are not ours
    assert "Scaffolded from `models/qwen3`" in (package / "README.md").read_text()
    # The released Qwen3-8B config is that checkpoint's facts: copied as it is, folder name included.
    assert (package / "configs/qwen3-8b/config.json").read_bytes() == \
        (REPO / "models/qwen3/configs/qwen3-8b/config.json").read_bytes()
    assert "models/foo/configs/qwen3-8b" in (package / "tests/test_launch.py").read_text()
    listing = subprocess.run([sys.executable, "-m", "shardzoo", "models"], env=made.env, capture_output=True,
                             text=True, timeout=120)
    assert "foo  shardzoo-foo 0.1.0  architectures: FooForCausalLM" in listing.stdout, listing.stdout + listing.stderr
    # The fast case CI keeps; `nox -s templates` runs every template's whole test folder.
    run = run_tests(made, [f"models/foo/tests/{name}" for name in ("test_parity.py", "test_parity_moe.py",
                                                                    "test_golden_loss.py", "test_train_from_hf.py")])
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert " passed" in run.stdout and "skipped" not in run.stdout
