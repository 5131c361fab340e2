"""Rank awareness for a later torchrun/DDP launch (not DDP itself): who writes, who logs, how seeds differ.

Under ``torchrun`` the environment carries RANK, WORLD_SIZE and LOCAL_RANK. Model initialisation uses the same seed
on every rank (replicas start equal); data streams get a rank-specific seed (ranks see different batches); only
rank 0 writes checkpoints, history, selected models and shows a progress bar.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from pipeline.algorithms.hparams import seed_hash


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def dist_info() -> DistInfo:
    return DistInfo(
        rank=int(os.environ.get("RANK", 0)),
        world_size=int(os.environ.get("WORLD_SIZE", 1)),
        local_rank=int(os.environ.get("LOCAL_RANK", 0)),
    )


def data_seed(seed: int, domain: str, info: DistInfo) -> int:
    """The seed of one domain's batch stream on this rank (stable: adding a domain never shifts another's)."""
    return seed_hash(seed, "data", domain, info.rank)
