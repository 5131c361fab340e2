"""The audit's view of an ingest directory: split rows, tensors, masks (or their honest absence), samples."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from pipeline.cache import ImageCache
from pipeline.evaluate.inputs import image_batch

if TYPE_CHECKING:
    import pandas as pd


def ellipse_lungs(size: int) -> np.ndarray:
    """A fixed two-ellipse lung field (bool (S, S)): a documented heuristic for data without lung masks.

    Centres at 30% and 70% of the width, 47% of the height; half-axes 15% x 28% of the side (a PA chest
    radiograph's lung fields, roughly). Every number computed with it is labelled estimated."""
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    lungs = np.zeros((size, size), dtype=bool)
    for cx in (0.30, 0.70):
        lungs |= ((xx - cx) / 0.15) ** 2 + ((yy - 0.47) / 0.28) ** 2 <= 1.0
    return lungs


@dataclass
class AuditData:
    frame: pd.DataFrame          # manifest rows of the audited split, index 0..n-1
    manifest: pd.DataFrame       # the whole manifest (probes use every split)
    cache: ImageCache
    lung_source: str               # "manifest", "estimated" or "none"
    has_shortcut_masks: bool
    has_counterfactuals: bool

    @classmethod
    def open(cls, ingest_dir: str | Path, split: str, lung_estimate: str = "none") -> AuditData:
        from pipeline.manifest import read_manifest, split_rows

        frame = read_manifest(ingest_dir)
        cache = ImageCache.open(ingest_dir)
        rows = split_rows(frame, split, stage="audit", where=ingest_dir)
        idx = rows["cache_index"].to_numpy()
        has_lungs = bool(np.asarray(cache.lung_masks[np.sort(idx)]).any())
        lung_source = "manifest" if has_lungs else ("estimated" if lung_estimate == "ellipses" else "none")
        has_shortcuts = bool(np.asarray(cache.shortcut_masks[np.sort(idx)]).any())
        cf = rows["counterfactual_index"].to_numpy() if "counterfactual_index" in rows else np.full(len(rows), -1)
        has_cf = cache.has_counterfactuals and bool((cf >= 0).any())
        return cls(frame=rows, manifest=frame, cache=cache, lung_source=lung_source, has_shortcut_masks=has_shortcuts,
                   has_counterfactuals=has_cf)

    def images(self, rows: np.ndarray) -> torch.Tensor:
        return image_batch(self.cache.images, self.frame["cache_index"].to_numpy()[rows])

    def labels(self, rows: np.ndarray) -> np.ndarray:
        return self.frame["label"].to_numpy().astype(np.int64)[rows]

    def lungs(self, rows: np.ndarray) -> np.ndarray | None:
        """bool (B, S, S) or None where there are no lung masks (nor an estimate)."""
        if self.lung_source == "none":
            return None
        if self.lung_source == "estimated":
            return np.broadcast_to(ellipse_lungs(self.cache.size), (len(rows), self.cache.size, self.cache.size))
        idx = self.frame["cache_index"].to_numpy()[rows]
        return np.asarray(self.cache.lung_masks[idx]) > 0

    def shortcuts(self, rows: np.ndarray) -> np.ndarray | None:
        if not self.has_shortcut_masks:
            return None
        return np.asarray(self.cache.shortcut_masks[self.frame["cache_index"].to_numpy()[rows]])

    def counterfactuals(self, rows: np.ndarray) -> tuple[torch.Tensor | None, np.ndarray]:
        """(counterfactual images for ``rows`` (a row's own image where it has none), has-counterfactual mask)."""
        if not self.has_counterfactuals:
            return None, np.zeros(len(rows), dtype=bool)
        cf = self.frame["counterfactual_index"].to_numpy().astype(np.int64)[rows]
        has = cf >= 0
        x = self.images(rows)
        if has.any():
            x[torch.from_numpy(has)] = image_batch(self.cache.get("counterfactual_images"), cf[has])
        return x, has

    def strata(self) -> np.ndarray:
        f = self.frame
        return (f["site"].astype(str) + "|" + f["position"].astype(str) + "|" + f["label"].astype(str)).to_numpy()

    def stratified_sample(self, n: int, seed: int) -> np.ndarray:
        """Up to ``n`` row numbers, spread evenly over site x position x label strata (round-robin), sorted."""
        return stratified_rows(self.strata(), n, seed)


def stratified_rows(strata: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    pools = {key: list(rng.permutation(np.flatnonzero(strata == key))) for key in sorted(set(strata))}
    chosen: list[int] = []
    while len(chosen) < n and any(pools.values()):
        for key in list(pools):
            if pools[key] and len(chosen) < n:
                chosen.append(int(pools[key].pop()))
    return np.sort(np.asarray(chosen, dtype=np.int64))
