"""Registry lookup as MindSpeed-MM's model hub: explicit model_id, then config.json architectures[0],
then model_type, else the AutoModel path (None); an unknown model_id lists the registered ones, and
two packages claiming one checkpoint is an error, never a silent pick."""

from __future__ import annotations

import dataclasses

import pytest
import shardzoo.registry as registry
from shardzoo.config import ConfigError
from shardzoo.registry import find_spec, load_spec
from shardzoo_qwen3 import SPEC


class FakeEntryPoint:
    def __init__(self, spec):
        self.spec, self.dist = spec, None

    def load(self):
        return self.spec


@pytest.fixture
def packages(monkeypatch):
    specs = {
        "alpha": dataclasses.replace(SPEC, name="alpha", architectures=("AlphaForCausalLM",), model_types=("alpha",)),
        "beta": dataclasses.replace(SPEC, name="beta", architectures=("BetaForCausalLM",), model_types=("alpha_v2",)),
    }
    eps = {name: FakeEntryPoint(spec) for name, spec in specs.items()}
    monkeypatch.setattr(registry, "registered", lambda: eps)
    return specs


def test_lookup_order(packages):
    alpha, beta = packages["alpha"], packages["beta"]
    hf = {"architectures": ["BetaForCausalLM"], "model_type": "alpha"}
    assert find_spec("alpha", hf) is alpha  # explicit model_id first
    assert find_spec(None, hf) is beta  # then architectures[0], before model_type
    assert find_spec(None, {"architectures": ["Unknown"], "model_type": "alpha_v2"}) is beta  # then model_type
    assert find_spec(None, {"model_type": "alpha"}) is alpha
    assert find_spec(None, {"_class_name": "AlphaForCausalLM"}) is alpha  # diffusers names its class there
    assert find_spec(None, {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}) is None  # AutoModel path


def test_unknown_model_id_lists_the_registered(packages):
    with pytest.raises(ConfigError, match=r"'gamma' is not a registered model package \(registered: alpha, beta\)"):
        load_spec("gamma")


def test_two_packages_claiming_one_checkpoint_is_an_error(packages, monkeypatch):
    packages["beta"] = dataclasses.replace(packages["beta"], architectures=("AlphaForCausalLM",))
    monkeypatch.setattr(registry, "registered", lambda: {n: FakeEntryPoint(s) for n, s in packages.items()})
    with pytest.raises(ConfigError, match=r"architecture 'AlphaForCausalLM' is served by several model packages "
                                          r"\(alpha, beta\); set model.model_id"):
        find_spec(None, {"architectures": ["AlphaForCausalLM"]})
    assert find_spec("beta", {"architectures": ["AlphaForCausalLM"]}) is packages["beta"]
