"""Converter operations between HF checkpoint layouts and ours, written as data in a model's adapter.

Each op names its keys with templates such as `model.layers.{layer}.mlp.gate_proj.weight`; a
`{name}` placeholder matches one dotted component and carries over to the other side. An op
works on a stream of (key, tensor) pairs in both directions: `from_hf` (import) and `to_hf`
(export, the exact inverse). Keys an op does not match pass through unchanged, so a chain of
ops composes: the adapter runs them in order on import and inverted in reverse order on export.
Ops that join several tensors (Concat, FusedQKV, Stack) hold the parts of one group until the
group is complete; a stream that ends with a group incomplete is an error naming the keys.

Ops: Rename, RenamePrefix (a sub-tree moved), Transpose, Concat (fused gate/up), Split (its
mirror), FusedQKV (per-KV-group layout), Stack (per-expert tensors <-> one expert stack),
Interleave (alternating rows <-> blocks), ImportOnly (ops reading an older layout on import only).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence

import torch

from .lazy_tensors import join, materialize

Items = Iterable[tuple[str, torch.Tensor]]
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


class Pattern:
    """A key template: literal text plus {name} placeholders, each matching one dotted component."""

    def __init__(self, template: str):
        self.template = template
        parts, last = [], 0
        for m in _PLACEHOLDER.finditer(template):
            parts.append(re.escape(template[last:m.start()]) + f"(?P<{m.group(1)}>[^.]+)")
            last = m.end()
        self.regex = re.compile("".join(parts) + re.escape(template[last:]))
        self.names = frozenset(_PLACEHOLDER.findall(template))

    def match(self, key: str) -> Optional[dict[str, str]]:
        m = self.regex.fullmatch(key)
        return m.groupdict() if m else None

    def format(self, values: dict[str, Any]) -> str:
        return self.template.format(**values)


def _group_stage(items: Items, match: Callable[[str], Optional[tuple[tuple, Any]]],
                 needed: Callable[[tuple], int],
                 emit: Callable[[tuple, dict[Any, torch.Tensor]], Iterable[tuple[str, torch.Tensor]]],
                 what: str) -> Iterator[tuple[str, torch.Tensor]]:
    """Route matching keys into groups; emit a group once it holds `needed(group)` parts."""
    pending: dict[tuple, dict[Any, tuple[str, torch.Tensor]]] = {}
    for key, tensor in items:
        hit = match(key)
        if hit is None:
            yield key, tensor
            continue
        group, slot = hit
        parts = pending.setdefault(group, {})
        if slot in parts:
            raise KeyError(f"{what}: {key} appears twice (also as {parts[slot][0]})")
        parts[slot] = (key, tensor)
        if len(parts) == needed(group):
            del pending[group]
            yield from emit(group, {s: t for s, (_, t) in parts.items()})
    if pending:
        held = sorted(k for parts in pending.values() for k, _ in parts.values())
        raise KeyError(f"{what}: the checkpoint ended with incomplete groups; present but missing their partners: "
                       f"{held[:20]}{' ...' if len(held) > 20 else ''}")


def _values(group: tuple) -> dict[str, str]:
    return dict(group)


def _key_group(pattern: Pattern, key: str, drop: str = "") -> Optional[tuple]:
    values = pattern.match(key)
    if values is None:
        return None
    return tuple(sorted((k, v) for k, v in values.items() if k != drop))


class ConvertOp:
    def from_hf(self, items: Items, config) -> Iterator[tuple[str, torch.Tensor]]:
        raise NotImplementedError

    def to_hf(self, items: Items, config) -> Iterator[tuple[str, torch.Tensor]]:
        raise NotImplementedError


class _OneToOne(ConvertOp):
    """One HF tensor <-> one of ours, through a tensor function and its inverse."""

    def _patterns(self) -> tuple[Pattern, Pattern]:
        hf, ours = Pattern(self.hf), Pattern(self.ours)
        if hf.names != ours.names:
            raise ValueError(f"{type(self).__name__}({self.hf!r}, {self.ours!r}): both sides need the same "
                             "placeholders")
        return hf, ours

    def _forward(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def _inverse(self, tensor: torch.Tensor) -> torch.Tensor:
        return tensor

    def _map(self, items: Items, src: Pattern, dst: Pattern, fn) -> Iterator[tuple[str, torch.Tensor]]:
        for key, tensor in items:
            values = src.match(key)
            yield (key, tensor) if values is None else (dst.format(values), fn(tensor))

    def from_hf(self, items, config):
        hf, ours = self._patterns()
        return self._map(items, hf, ours, self._forward)

    def to_hf(self, items, config):
        hf, ours = self._patterns()
        return self._map(items, ours, hf, self._inverse)


@dataclass(frozen=True)
class Rename(_OneToOne):
    hf: str
    ours: str


@dataclass(frozen=True)
class Transpose(_OneToOne):
    """HF stores the tensor with two dims swapped relative to ours (e.g. [in, out] vs nn.Linear's [out, in])."""

    hf: str
    ours: str
    dims: tuple[int, int] = (-2, -1)

    def _forward(self, tensor):
        return materialize(tensor).transpose(*self.dims).contiguous()

    _inverse = _forward


@dataclass(frozen=True)
class Interleave(_OneToOne):
    """HF alternates `parts` tensors element by element along `dim` (g0 u0 g1 u1 ...); ours keeps them
    as contiguous blocks (g0 g1 ... u0 u1 ...)."""

    hf: str
    ours: str
    dim: int = -1
    parts: int = 2

    def _forward(self, tensor):
        tensor = materialize(tensor)
        dim = self.dim % tensor.dim()
        n = tensor.shape[dim] // self.parts
        if n * self.parts != tensor.shape[dim]:
            raise ValueError(f"Interleave({self.hf!r}): dim {dim} of size {tensor.shape[dim]} is not a multiple "
                             f"of {self.parts}")
        return tensor.unflatten(dim, (n, self.parts)).transpose(dim, dim + 1).flatten(dim, dim + 1).contiguous()

    def _inverse(self, tensor):
        dim = self.dim % tensor.dim()
        n = tensor.shape[dim] // self.parts
        return tensor.unflatten(dim, (self.parts, n)).transpose(dim, dim + 1).flatten(dim, dim + 1).contiguous()


def _split_sizes(total: int, count: int, sizes: Optional[Sequence[int]], what: str) -> list[int]:
    if sizes is None:
        if total % count:
            raise ValueError(f"{what}: size {total} does not split into {count} equal parts; give sizes")
        return [total // count] * count
    if sum(sizes) != total:
        raise ValueError(f"{what}: sizes {list(sizes)} do not add up to {total}")
    return list(sizes)


@dataclass(frozen=True)
class _Join(ConvertOp):
    """Several tensors on one side are one tensor on the other (concatenated along `dim`)."""

    parts: tuple[str, ...]
    whole: str
    dim: int = 0
    sizes: Optional[Callable[[Any], Sequence[int]]] = None
    """config -> the parts' sizes along dim; None = equal parts."""

    def _join(self, items: Items, config) -> Iterator[tuple[str, torch.Tensor]]:
        parts, whole = [Pattern(p) for p in self.parts], Pattern(self.whole)

        def match(key):
            for slot, pattern in enumerate(parts):
                group = _key_group(pattern, key)
                if group is not None:
                    return group, slot
            return None

        def emit(group, tensors):
            yield whole.format(_values(group)), self.combine([tensors[i] for i in range(len(parts))], config)
        return _group_stage(items, match, lambda g: len(parts), emit, f"{type(self).__name__}({self.whole!r})")

    def _part(self, items: Items, config) -> Iterator[tuple[str, torch.Tensor]]:
        parts, whole = [Pattern(p) for p in self.parts], Pattern(self.whole)
        for key, tensor in items:
            values = whole.match(key)
            if values is None:
                yield key, tensor
                continue
            yield from zip((p.format(values) for p in parts), self.separate(tensor, config))

    def combine(self, tensors: list[torch.Tensor], config) -> torch.Tensor:
        return join(tensors, self.dim, stacked=False)  # stays unread while its parts are (import)

    def separate(self, tensor: torch.Tensor, config) -> list[torch.Tensor]:
        sizes = _split_sizes(tensor.shape[self.dim], len(self.parts), self.sizes(config) if self.sizes else None,
                             f"{type(self).__name__}({self.whole!r})")
        return [t.clone(memory_format=torch.contiguous_format) for t in torch.split(tensor, sizes, dim=self.dim)]


class Concat(_Join):
    """HF's separate tensors (e.g. gate_proj, up_proj) are one fused tensor of ours."""

    def __init__(self, hf: Sequence[str], ours: str, dim: int = 0,
                 sizes: Optional[Callable[[Any], Sequence[int]]] = None):
        super().__init__(tuple(hf), ours, dim, sizes)

    def from_hf(self, items, config):
        return self._join(items, config)

    def to_hf(self, items, config):
        return self._part(items, config)


class Split(_Join):
    """HF's fused tensor is several tensors of ours (the mirror of Concat)."""

    def __init__(self, hf: str, ours: Sequence[str], dim: int = 0,
                 sizes: Optional[Callable[[Any], Sequence[int]]] = None):
        super().__init__(tuple(ours), hf, dim, sizes)

    def from_hf(self, items, config):
        return self._part(items, config)

    def to_hf(self, items, config):
        return self._join(items, config)


class FusedQKV(Concat):
    """HF q/k/v projections -> one qkv tensor grouped per KV head: [q heads of group 0, k0, v0, q heads of
    group 1, k1, v1, ...] along dim 0, so sharding dim 0 on a multiple of groups keeps GQA groups whole.

    `heads(config)` gives (num_attention_heads, num_key_value_heads, head_dim). Works for weights
    [out, in] and biases [out].
    """

    def __init__(self, q: str, k: str, v: str, ours: str, heads: Callable[[Any], tuple[int, int, int]]):
        super().__init__((q, k, v), ours, dim=0)
        object.__setattr__(self, "heads", heads)

    def combine(self, tensors, config):
        n_heads, n_kv, d = self.heads(config)
        tensors = [materialize(t) for t in tensors]
        q, k, v = (t.reshape(n_kv, -1, *t.shape[1:]) for t in tensors)
        if q.shape[1] != n_heads // n_kv * d or k.shape[1] != d:
            raise ValueError(f"FusedQKV({self.whole!r}): q/k shapes {tuple(tensors[0].shape)}/"
                             f"{tuple(tensors[1].shape)} do not fit heads={n_heads}, kv_heads={n_kv}, head_dim={d}")
        return torch.cat([q, k, v], dim=1).reshape(-1, *tensors[0].shape[1:])

    def separate(self, tensor, config):
        n_heads, n_kv, d = self.heads(config)
        grouped = tensor.reshape(n_kv, -1, *tensor.shape[1:])
        q, k, v = torch.split(grouped, [n_heads // n_kv * d, d, d], dim=1)
        return [t.reshape(-1, *tensor.shape[1:]).clone(memory_format=torch.contiguous_format) for t in (q, k, v)]


@dataclass(frozen=True)
class Stack(ConvertOp):
    """HF's per-expert tensors (`index` placeholder in `hf`) are one stacked tensor of ours along `dim`."""

    hf: str
    ours: str
    count: Callable[[Any], int]
    """config -> number of stacked tensors (e.g. num_local_experts)."""
    index: str = "expert"
    dim: int = 0

    def _patterns(self) -> tuple[Pattern, Pattern]:
        hf, ours = Pattern(self.hf), Pattern(self.ours)
        if self.index not in hf.names or hf.names - {self.index} != ours.names:
            raise ValueError(f"Stack({self.hf!r}, {self.ours!r}): hf needs {{{self.index}}} and otherwise the same "
                             "placeholders as ours")
        return hf, ours

    def from_hf(self, items, config):
        hf, ours = self._patterns()
        count = self.count(config)

        def match(key):
            values = hf.match(key)
            if values is None:
                return None
            slot = int(values[self.index])
            if not 0 <= slot < count:
                raise KeyError(f"Stack({self.hf!r}): {key} has {self.index} {slot}, outside 0..{count - 1}")
            return _key_group(hf, key, drop=self.index), slot

        def emit(group, tensors):
            yield ours.format(_values(group)), join([tensors[i] for i in range(count)], self.dim,
                                                   stacked=True)
        return _group_stage(items, match, lambda g: count, emit, f"Stack({self.ours!r})")

    def to_hf(self, items, config):
        hf, ours = self._patterns()
        for key, tensor in items:
            values = ours.match(key)
            if values is None:
                yield key, tensor
                continue
            for i, part in enumerate(tensor.unbind(self.dim)):
                yield hf.format({**values, self.index: i}), part.clone(memory_format=torch.contiguous_format)


@dataclass(frozen=True)
class RenamePrefix(ConvertOp):
    """Every key starting with `hf` starts with `ours` instead (a whole sub-tree moved, e.g. a language
    model nested under another name); keys without the prefix pass through."""

    hf: str
    ours: str

    @staticmethod
    def _move(items: Items, src: str, dst: str) -> Iterator[tuple[str, torch.Tensor]]:
        for key, tensor in items:
            yield (dst + key[len(src):], tensor) if key.startswith(src) else (key, tensor)

    def from_hf(self, items, config):
        return self._move(items, self.hf, self.ours)

    def to_hf(self, items, config):
        return self._move(items, self.ours, self.hf)


@dataclass(frozen=True)
class ImportOnly(ConvertOp):
    """Ops that read another (older) layout on import; exports stay in the adapter's own layout, so
    `to_hf` passes everything through. Keys of the other layout are recognised by the ops' patterns."""

    ops: tuple[ConvertOp, ...]

    def from_hf(self, items, config):
        stream = iter(items)
        for op in self.ops:
            stream = op.from_hf(stream, config)
        return stream

    def to_hf(self, items, config):
        return iter(items)
