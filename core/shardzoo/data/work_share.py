"""Tokenising a streamed dataset once over all ranks instead of once per rank.

Every rank of a streamed run walks the same global row stream (the loader then keeps each rank's
slices), so without sharing each rank tokenises all of it. With a `WorkShare` each batch of raw
rows is dealt round-robin: rank r tokenises rows r, r + world, ...; the results are all-gathered
and put back in order, so every rank still sees exactly the stream one process would build (the
same rows, skips and statistics: determinism and resume replay are unchanged) for 1/world of the
tokenising. The exchange runs on a gloo group of its own, so it never interleaves with the
training's collectives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Optional

import torch.distributed as dist

from .readers import DataError


@dataclass
class WorkShare:
    rank: int
    world: int
    gather: Callable[[Any], list]
    """Every rank's object, in rank order (a collective)."""

    @classmethod
    def over_all_ranks(cls) -> Optional["WorkShare"]:
        """Collective: the share over every rank of the job, or None in a single process."""
        if not dist.is_initialized() or dist.get_world_size() == 1:
            return None
        group = dist.new_group(backend="gloo")

        def gather(obj: Any) -> list:
            out: list = [None] * dist.get_world_size(group)
            dist.all_gather_object(out, obj, group=group)
            return out
        return cls(dist.get_rank(), dist.get_world_size(), gather)

    def mine(self, items: list) -> list:
        """This rank's part of a batch."""
        return items[self.rank::self.world]

    def merged(self, results: Iterable[list]) -> Iterator[list]:
        """Each batch's results of every rank, back in the batch's order. `results` yields this rank's
        results of its part of each batch; every rank has the same number of batches. An error on any
        rank is raised on all of them (none is left waiting)."""
        it = iter(results)
        while True:
            error, part, done = None, None, False
            try:
                part = next(it)
            except StopIteration:
                done = True
            except Exception as exc:  # noqa: BLE001 - reported to every rank
                error = f"rank {self.rank}: {exc!r}"
            parts = self.gather((error, part, done))
            errors = [e for e, _, _ in parts if e]
            if errors:
                raise DataError(f"tokenising the streamed data failed on {errors[0]}")
            if all(d for _, _, d in parts):
                return
            assert not any(d for _, _, d in parts), "ranks disagree on the number of batches"
            out: list = [None] * sum(len(p) for _, p, _ in parts)
            for r, (_, p, _) in enumerate(parts):
                out[r::self.world] = p
            yield out
