"""All-pairs combinations: a short list of cases in which every value of every factor meets every
value of every other factor at least once (where the pair is allowed). Features that break only in
combination are found by a handful of runs instead of the product of all their settings.

Deterministic: the same factors give the same cases, in the same order.
"""

from __future__ import annotations

import itertools
from typing import Callable, Mapping, Sequence

Case = dict[str, object]


def all_pairs(factors: Mapping[str, Sequence[object]],
              allowed: Callable[[Case], bool] = lambda case: True) -> list[Case]:
    """Cases covering every allowed pair of (factor, value)s. `allowed(partial)` says whether a case
    holding those values (a partial case while it is built) may exist; pairs no case may hold are not
    required. Greedy: each new case takes, factor by factor, the value that covers most uncovered pairs
    (ties to the first value), starting from the first uncovered pair."""
    names = list(factors)
    uncovered = {((a, va), (b, vb)) for a, b in itertools.combinations(names, 2)
                 for va in factors[a] for vb in factors[b] if allowed({a: va, b: vb})}
    cases: list[Case] = []
    while uncovered:
        (a, va), (b, vb) = min(uncovered, key=lambda p: (names.index(p[0][0]), names.index(p[1][0]),
                                                         _index(factors, p[0]), _index(factors, p[1])))
        case: Case = {a: va, b: vb}
        for name in names:
            if name in case:
                continue
            options = [v for v in factors[name] if allowed({**case, name: v})]
            if not options:
                raise ValueError(f"no value of {name!r} is allowed with {case}")
            case[name] = max(options, key=lambda v: (_gain(uncovered, case, name, v), -factors[name].index(v)))
        if not allowed(case):
            raise ValueError(f"the greedy case {case} is not allowed; tighten `allowed` on partial cases")
        covered = {((x, case[x]), (y, case[y])) for x, y in itertools.combinations(names, 2)}
        uncovered -= covered
        cases.append({name: case[name] for name in names})
    return cases


def _index(factors: Mapping[str, Sequence[object]], pair: tuple[str, object]) -> int:
    return list(factors[pair[0]]).index(pair[1])


def _gain(uncovered: set, case: Case, name: str, value: object) -> int:
    return sum(((x, case[x]), (name, value)) in uncovered or ((name, value), (x, case[x])) in uncovered
               for x in case)


def covers_all_pairs(cases: list[Case], factors: Mapping[str, Sequence[object]],
                     allowed: Callable[[Case], bool] = lambda case: True) -> list[tuple]:
    """The allowed pairs no case holds (empty when the cases are all-pairs)."""
    names = list(factors)
    held = {((a, c[a]), (b, c[b])) for c in cases for a, b in itertools.combinations(names, 2)}
    return [((a, va), (b, vb)) for a, b in itertools.combinations(names, 2) for va in factors[a]
            for vb in factors[b] if allowed({a: va, b: vb}) and ((a, va), (b, vb)) not in held]
