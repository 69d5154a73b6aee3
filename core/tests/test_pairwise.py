"""The all-pairs generator: every allowed pair of values meets in some case, disallowed ones never,
in far fewer cases than the product."""

import itertools

import pytest
from shardzoo.testing.pairwise import all_pairs, covers_all_pairs

FACTORS = {"a": [0, 1, 2], "b": ["x", "y"], "c": [True, False], "d": [1, 2], "e": ["p", "q", "r"]}


def test_every_pair_is_covered_in_few_cases():
    cases = all_pairs(FACTORS)
    assert not covers_all_pairs(cases, FACTORS)
    assert len(cases) <= 12 < len(list(itertools.product(*FACTORS.values())))  # 9 pairs of a x e at least
    assert all(set(c) == set(FACTORS) for c in cases) and all_pairs(FACTORS) == cases  # deterministic


def test_disallowed_pairs_never_appear_and_are_not_required():
    allowed = lambda case: not (case.get("a") == 2 and case.get("b") == "y")  # noqa: E731
    cases = all_pairs(FACTORS, allowed)
    assert not any(c["a"] == 2 and c["b"] == "y" for c in cases)
    assert not covers_all_pairs(cases, FACTORS, allowed)
    assert covers_all_pairs(cases, FACTORS)  # without the rule, (a=2, b=y) would be missing


def test_a_factor_with_no_allowed_value_is_an_error():
    with pytest.raises(ValueError, match="no value of 'b' is allowed"):
        all_pairs({"a": [0], "b": [1], "c": [2]}, lambda case: "b" not in case)
