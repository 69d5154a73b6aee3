"""The mesh sizes of a run, from the parallel section and the world size (parallel/mesh_shape.py)."""

import copy

import pytest
from shardzoo.config import ConfigError, config_from_dict
from shardzoo.parallel.mesh_shape import mesh_shape


def build(raw):
    return config_from_dict(copy.deepcopy(raw))


@pytest.mark.parametrize("world,fsdp,ok", [(8, "auto", (1, 8)), (8, 4, (2, 4)), (6, 4, None), (3, 2, None)])
def test_data_parallel_axes(minimal_raw, world, fsdp, ok):
    minimal_raw["parallel"] = {"fsdp_size": fsdp}
    cfg = build(minimal_raw)
    if ok:
        assert (mesh_shape(cfg.parallel, world).replicate, mesh_shape(cfg.parallel, world).shard) == ok
    else:
        with pytest.raises(ConfigError, match=f"parallel.fsdp_size={fsdp} does not divide the world size {world}"):
            mesh_shape(cfg.parallel, world)


@pytest.mark.parametrize("world,parallel,ok", [
    (8, {}, (1, 1)),
    (8, {"ep_size": 4}, (2, 4)),
    (8, {"ep_size": 4, "ep_fsdp_size": 2}, (2, 4)),
    (8, {"ep_size": 8}, (1, 8)),
    (8, {"ep_size": 4, "ep_fsdp_size": 1},
     "ep_size x ep_fsdp_size .4 x 1. must equal the world size 8; set ep_fsdp_size: 2"),
    (6, {"ep_size": 4}, "parallel.ep_size=4 does not divide the world size 6"),
    (8, {"ep_size": 2, "fsdp_size": 4}, "expert parallel together with replicated .HSDP."),
    (8, {"ep_fsdp_size": 2}, "parallel.ep_fsdp_size=2: expert-FSDP splits the ranks of expert parallelism"),
])
def test_expert_axes(minimal_raw, world, parallel, ok):
    minimal_raw["parallel"] = parallel
    cfg = build(minimal_raw)
    if isinstance(ok, tuple):
        assert (mesh_shape(cfg.parallel, world).ep_fsdp, mesh_shape(cfg.parallel, world).ep) == ok
    else:
        with pytest.raises(ConfigError, match=ok):
            mesh_shape(cfg.parallel, world)


@pytest.mark.parametrize("world,cp,ok", [
    (4, 1, (4, 1)), (4, 2, (2, 2)), (4, 4, (1, 4)),
    (6, 4, "parallel.cp_size=4 does not divide the world size 6"),
])
def test_context_parallel_axes(minimal_raw, world, cp, ok):
    minimal_raw["parallel"] = {"cp_size": cp}
    cfg = build(minimal_raw)
    if isinstance(ok, tuple):
        assert (mesh_shape(cfg.parallel, world).dp, mesh_shape(cfg.parallel, world).cp) == ok
    else:
        with pytest.raises(ConfigError, match=ok):
            mesh_shape(cfg.parallel, world)
