"""Process group of a sharded index build: ``torchrun`` (one or many nodes) or a plain single process.

torchrun sets ``WORLD_SIZE``/``RANK``/``LOCAL_RANK``; the build only needs barriers between its
stages (the work itself meets through files in the shared ``<out>.partial/`` folder), so the
group always uses gloo -- on CPU-only machines and GPU boxes alike -- with a long timeout: one
rank may merge a large index while the others wait.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: how long a rank waits at a barrier for the slowest one (a 10^6-tile merge takes minutes, not hours)
BARRIER_TIMEOUT = _dt.timedelta(hours=12)


@dataclass(frozen=True)
class Dist:
    """This process's place in the build: ``rank`` of ``world`` (``local_rank`` picks its GPU)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this module started the process group (and ends it in close())

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every rank (no-op in a single process)."""
        if self.world > 1:
            import torch.distributed as dist

            dist.barrier()

    def close(self) -> None:
        """End the process group if :func:`from_env` started it."""
        if self.owns_group:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()

    def shard(self, n: int) -> list[int]:
        """The item numbers this rank runs: ``rank, rank + world, ...`` (round robin: spatially
        adjacent items land on different ranks, which evens out empty areas of the map)."""
        return list(range(self.rank, n, self.world))


def from_env() -> Dist:
    """The current process's :class:`Dist`; starts a gloo process group under torchrun if none is running."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
        log.info("index build rank %d of %d (local rank %d)", rank, world, local)
    return Dist(rank, world, local, owns)
