"""How the world's ranks split: the sizes of every mesh axis, computed once per run from the parallel
section and the world size. Impossible layouts raise ConfigError naming the key before any process
group exists. Reads only the parallel section's fields (any object that has them)."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError


@dataclass(frozen=True)
class MeshShape:
    world: int
    replicate: int
    """Data-parallel replicas (HSDP) ; 1 = pure FSDP."""
    shard: int
    """Ranks each non-expert parameter is sharded over."""
    ep_fsdp: int
    """Ranks holding the same experts (they FSDP-shard them); 1 without EP."""
    ep: int
    """Ranks splitting each MoE layer's experts; 1 without EP."""
    dp: int
    """Ranks reading different rows (world / cp)."""
    cp: int
    """Ranks splitting the sequence of the same rows."""
    tp: int = 1
    """Ranks splitting every dense layer's heads and columns (the innermost axis: consecutive ranks)."""

    def describe(self) -> str:
        return (f"fsdp {self.replicate}x{self.shard}" + (f", ep_fsdp {self.ep_fsdp} x ep {self.ep}" if self.ep > 1
                                                          else "") + (f", cp {self.cp}" if self.cp > 1 else "")
                + (f", tp {self.tp}" if self.tp > 1 else ""))


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ConfigError(message)


def mesh_shape(parallel, world: int) -> MeshShape:
    """The mesh sizes for `parallel` (a ParallelConfig) on `world` ranks, or ConfigError if impossible.
    Under tensor parallel FSDP shards over the world / tp_size ranks of each tp index."""
    tp = parallel.tp_size
    _require(world % tp == 0, f"parallel.tp_size={tp} does not divide the world size {world}; use a divisor of "
             f"{world}")
    replicate, shard = _data_parallel(parallel, world // tp)
    cp = parallel.cp_size
    _require((world // tp) % cp == 0, f"parallel.cp_size={cp} does not divide the world size {world}"
             + (f" / tp_size {tp}" if tp > 1 else "") + f"; use a divisor of {world // tp}")
    if tp > 1:
        _require(replicate == 1, f"parallel.tp_size={tp} with parallel.fsdp_size={shard} < {world // tp}: tensor "
                 "parallel together with replicated (HSDP) data parallel is not available in this version; set "
                 "parallel.fsdp_size: auto")
    ep_fsdp, ep = _expert(parallel, world, replicate, shard)
    return MeshShape(world, replicate, shard, ep_fsdp, ep, world // (cp * tp), cp, tp)


def _data_parallel(p, ranks: int) -> tuple[int, int]:
    """(replicas, shard size) over `ranks` (the world, or world / tp_size under tensor parallel)."""
    shard = ranks if p.fsdp_size == "auto" else p.fsdp_size
    what = f"world size / tp_size ({ranks})" if p.tp_size > 1 else f"world size {ranks}"
    _require(ranks % shard == 0, f"parallel.fsdp_size={shard} does not divide the {what}; use a divisor of {ranks} "
             f"or 'auto' (= {ranks})")
    return ranks // shard, shard


def _expert(p, world: int, replicate: int, shard: int) -> tuple[int, int]:
    if p.ep_size == 1:
        _require(p.ep_fsdp_size in ("auto", 1), f"parallel.ep_fsdp_size={p.ep_fsdp_size}: expert-FSDP splits the "
                 "ranks of expert parallelism; set parallel.ep_size > 1, or ep_fsdp_size: auto")
        return 1, 1
    _require(replicate == 1, f"parallel.ep_size={p.ep_size} with parallel.fsdp_size={shard} < world size "
             f"{world}: expert parallel together with replicated (HSDP) data parallel is not available in this "
             "version; set parallel.fsdp_size: auto")
    _require(world % p.ep_size == 0, f"parallel.ep_size={p.ep_size} does not divide the world size "
             f"{world}; use a divisor of {world}")
    ep_fsdp = world // p.ep_size if p.ep_fsdp_size == "auto" else p.ep_fsdp_size
    _require(ep_fsdp * p.ep_size == world, f"parallel.ep_fsdp_size={ep_fsdp}: ep_size x ep_fsdp_size "
             f"({p.ep_size} x {ep_fsdp}) must equal the world size {world}; set ep_fsdp_size: "
             f"{world // p.ep_size} or auto")
    return ep_fsdp, p.ep_size
