"""Per-domain infinite loaders (one minibatch per training domain per step, DomainBed-style) and an eval loader.

The stream of a domain is a pure function of its seed: flat position ``p`` lies in epoch ``p // n`` (a fresh
permutation seeded by ``(seed, epoch)``) and carries its own augmentation seed. A loader's whole state is the number
of batches consumed, so resuming (``load_state_dict``) replays exactly the batches an uninterrupted run would have
seen, with or without worker processes (which prefetch ahead of what was consumed).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, SequentialSampler

from pipeline.errors import DataError


def _collated(batch: Any) -> Any:
    """The dataset's ``__getitems__`` already collates (module-level so worker processes can pickle it)."""
    return batch


class DomainBatchSampler:
    """Infinite batches of ``(position, augmentation seed)`` pairs, starting at batch ``start``."""

    def __init__(self, n: int, batch_size: int, seed: int, start: int = 0, shard: tuple[int, int] = (0, 1)) -> None:
        if n <= 0:
            raise DataError("data: a training domain must have at least one image, got 0.")
        self.n, self.batch_size, self.seed, self.start = n, batch_size, seed, start
        # (rank, world_size): this rank yields the rank-th contiguous 1/world_size of each global batch (torchrun)
        self.shard = shard
        self._epoch = -1
        self._perm = np.empty(0, dtype=np.int64)

    def _permutation(self, epoch: int) -> np.ndarray:
        if epoch != self._epoch:
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            self._epoch = epoch
        return self._perm

    def batch(self, k: int) -> list[tuple[int, int]]:
        rank, world = self.shard
        local = self.batch_size // world
        first = k * self.batch_size + rank * local
        out = []
        for p in range(first, first + local):
            epoch, within = divmod(p, self.n)
            aug_seed = int(np.random.SeedSequence([self.seed, p, 7]).generate_state(1)[0])
            out.append((int(self._permutation(epoch)[within]), aug_seed))
        return out

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        k = self.start
        while True:
            yield self.batch(k)
            k += 1


class DomainLoader:
    """An infinite loader over one domain's dataset; ``next()`` -> ``(x, y)``; resumable by batch count."""

    def __init__(self, dataset: Dataset, *, batch_size: int, seed: int, num_workers: int = 0,
                 shard: tuple[int, int] = (0, 1)) -> None:
        self.dataset, self.batch_size, self.seed, self.num_workers = dataset, batch_size, seed, num_workers
        self.shard = shard  # (rank, world_size): batch_size is the global batch, this rank reads its shard
        self.consumed = 0
        self._iterator: Iterator | None = None

    def _make_iterator(self) -> Iterator:
        sampler = DomainBatchSampler(len(self.dataset), self.batch_size, self.seed, start=self.consumed,
                                     shard=self.shard)
        loader = DataLoader(
            self.dataset, batch_sampler=sampler, num_workers=self.num_workers, collate_fn=_collated,
            persistent_workers=False, prefetch_factor=2 if self.num_workers else None,
            generator=torch.Generator().manual_seed(self.seed),  # never draw from the global RNG
        )
        return iter(loader)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._iterator is None:
            self._iterator = self._make_iterator()
        batch = next(self._iterator)
        self.consumed += 1
        return batch

    def state_dict(self) -> dict[str, int]:
        return {"consumed": self.consumed, "seed": self.seed, "n": len(self.dataset), "batch_size": self.batch_size}

    def load_state_dict(self, state: dict[str, int]) -> None:
        mine = self.state_dict()
        for key in ("seed", "n", "batch_size"):
            if state[key] != mine[key]:
                raise DataError(
                    f"data: loader {key} must match the checkpoint to resume, got {mine[key]} vs {state[key]}. "
                    "The ingest directory or the config changed since the checkpoint was written."
                )
        self.consumed = int(state["consumed"])
        self._iterator = None


class MultiDomainLoader:
    """One :class:`DomainLoader` per training domain; ``next()`` -> ``[(x, y) per domain]`` in domain order."""

    def __init__(self, loaders: dict[str, DomainLoader]) -> None:
        self.loaders = loaders

    def next(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        return [loader.next() for loader in self.loaders.values()]

    def state_dict(self) -> dict[str, dict[str, int]]:
        return {name: loader.state_dict() for name, loader in self.loaders.items()}

    def load_state_dict(self, state: dict[str, dict[str, int]]) -> None:
        if sorted(state) != sorted(self.loaders):
            raise DataError(
                f"data: training domains must match the checkpoint to resume, got {sorted(self.loaders)} "
                f"vs {sorted(state)}."
            )
        for name, loader in self.loaders.items():
            loader.load_state_dict(state[name])


def eval_loader(dataset: Dataset, *, batch_size: int, num_workers: int = 0) -> DataLoader:
    """Sequential, unaugmented batches ``(x, y)`` over ``dataset`` (row order kept, for per-row metadata)."""
    sampler = BatchSampler(SequentialSampler(range(len(dataset))), batch_size=batch_size, drop_last=False)
    return DataLoader(dataset, batch_sampler=sampler, num_workers=num_workers, collate_fn=_collated,
                      generator=torch.Generator().manual_seed(0))  # never draw from the global RNG
