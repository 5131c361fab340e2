"""A torch Dataset over the ingest cache: manifest rows -> ``(x, y)`` with ``x`` float32 ``(1, S, S)`` in [0, 1].

The network's input is the cached image as is (no further normalisation), so evaluate and audit feed the cache
straight to a loaded model (``images_to_input``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

    from pipeline.cache import ImageCache
    from pipeline.data.augment import Augmentation


def label_array(rows: pd.DataFrame) -> np.ndarray:
    """The ``label`` column as int64 ``(N,)``; an unknown label (pd.NA) is a DataError: callers that train or score
    pass labelled rows only (``pipeline.manifest.labelled``), so an NA here would otherwise become a wrong class."""
    unknown = int(rows["label"].isna().sum())
    if unknown:
        raise DataError(f"data: label must be known for every row served with a label, got {unknown} unknown of "
                        f"{len(rows)}. Pass pipeline.manifest.labelled(rows).")
    return rows["label"].to_numpy(dtype=np.int64)


def images_to_input(images: np.ndarray) -> torch.Tensor:
    """Cache images ``(B, S, S)`` (float16 memmap slice) -> network input ``(B, 1, S, S)`` float32."""
    return torch.from_numpy(np.asarray(images, dtype=np.float32)).unsqueeze(1)


class CacheDataset(Dataset):
    """Rows of the manifest (in the given order) served from the memory-mapped cache.

    Items are positions ``i`` (no augmentation) or ``(i, seed)`` pairs (augmented with that seed).
    ``__getitems__`` reads a whole batch with one sorted memmap read and returns it already collated.
    """

    def __init__(self, cache: ImageCache, rows: pd.DataFrame, augment: Augmentation | None = None) -> None:
        self.images = cache.images
        self.cache_index = rows["cache_index"].to_numpy(dtype=np.int64)
        self.labels = label_array(rows)
        self.augment = augment
        if len(self.cache_index) and (self.cache_index.min() < 0 or self.cache_index.max() >= len(cache)):
            bad = int(self.cache_index[(self.cache_index < 0) | (self.cache_index >= len(cache))][0])
            raise DataError(
                f"data: cache_index must lie in [0, {len(cache)}), got {bad} (manifest vs {cache.root}). "
                "Re-run ingest so manifest and cache match."
            )

    def __len__(self) -> int:
        return len(self.cache_index)

    def __getitem__(self, item: Any) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.__getitems__([item])
        return x[0], y[0]

    def __getitems__(self, items: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = [(int(it[0]), int(it[1])) if isinstance(it, (tuple, list)) else (int(it), None) for it in items]
        positions = np.fromiter((p for p, _ in pairs), dtype=np.int64, count=len(pairs))
        rows = self.cache_index[positions]
        order = np.argsort(rows, kind="stable")  # one forward pass over the memmap
        images = np.empty((len(rows),) + self.images.shape[1:], dtype=np.float32)
        images[order] = self.images[rows[order]]
        x = torch.from_numpy(images).unsqueeze(1)
        seeds = [seed for _, seed in pairs]
        if self.augment is not None and all(seed is not None for seed in seeds):
            x = self.augment(x, seeds)
        return x, torch.from_numpy(self.labels[positions])
