import pytest
import torch.nn as nn
from shardzoo.parallel import match_modules, pattern_to_regex


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.mlp = nn.Linear(2, 2)
        self.attn = nn.Linear(2, 2)


class Tiny(nn.Module):
    def __init__(self, n=12):
        super().__init__()
        self.model = nn.Module()
        self.model.layers = nn.ModuleList(Block() for _ in range(n))
        self.lm_head = nn.Linear(2, 2)


@pytest.mark.parametrize("pattern,expected", [
    ("model.layers.{*}", [f"model.layers.{i}" for i in range(12)]),
    ("model.layers.{0-2}", ["model.layers.0", "model.layers.1", "model.layers.2"]),
    ("model.layers.{1,3,5}", ["model.layers.1", "model.layers.3", "model.layers.5"]),
    ("model.layers.{0-1,10-11}", ["model.layers.0", "model.layers.1", "model.layers.10", "model.layers.11"]),
    ("model.layers.{*}.mlp", [f"model.layers.{i}.mlp" for i in range(12)]),
    ("*.layers.{11}.*", ["model.layers.11.mlp", "model.layers.11.attn"]),
    ("lm_head", ["lm_head"]),
])
def test_patterns_match_whole_names(pattern, expected):
    assert [n for n, _ in match_modules(Tiny(), [pattern], "k")] == expected


def test_range_does_not_match_prefix():
    assert not pattern_to_regex("model.layers.{1}").match("model.layers.10")


def test_unmatched_pattern_is_an_error_naming_the_key():
    with pytest.raises(ValueError, match=r"parallel.fsdp_modules: pattern\(s\) \['model.blocks.\{\*\}'\] match no"):
        match_modules(Tiny(), ["model.layers.{*}", "model.blocks.{*}"], "parallel.fsdp_modules")
    with pytest.raises(ValueError, match="runs backwards"):
        match_modules(Tiny(), ["model.layers.{5-2}"], "k")
    with pytest.raises(ValueError, match="must be"):
        match_modules(Tiny(), ["model.layers.{a}"], "k")
