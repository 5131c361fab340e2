"""The audit's view of an ingest directory: split rows, tensors, masks (or their honest absence), samples."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from pipeline.cache import ImageCache
from pipeline.data.inference import image_batch

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


def _rows_with_mask(masks: np.ndarray, idx: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """bool (len(idx),): which cache rows ``idx`` have a non-empty mask (read in ascending chunks)."""
    out = np.zeros(idx.size, dtype=bool)
    order = np.argsort(idx, kind="stable")
    for s in range(0, idx.size, chunk):
        part = order[s:s + chunk]
        out[part] = np.asarray(masks[idx[part]]).reshape(part.size, -1).any(axis=1)
    return out


@dataclass
class AuditData:
    """``frame`` holds every row of the audited split, labelled or not: label-free measurements use them all,
    accuracies only the labelled ones (``labelled``)."""

    frame: pd.DataFrame          # manifest rows of the audited split, index 0..n-1
    manifest: pd.DataFrame       # the whole manifest (probes use every split)
    cache: ImageCache
    lung_source: str               # "manifest" (some rows have masks), "estimated" or "none"
    has_shortcut_masks: bool
    has_counterfactuals: bool
    lung_provided: np.ndarray | None = None      # bool (n,): the row's lung mask is in the cache
    shortcut_provided: np.ndarray | None = None  # bool (n,): the row has a shortcut mask
    lung_estimate: str = "none"

    @classmethod
    def open(cls, ingest_dir: str | Path, split: str, lung_estimate: str = "none") -> AuditData:
        from pipeline.manifest import read_manifest, split_rows

        frame = read_manifest(ingest_dir)
        cache = ImageCache.open(ingest_dir)
        rows = split_rows(frame, split, stage="audit", where=ingest_dir)
        idx = rows["cache_index"].to_numpy().astype(np.int64)
        lung_provided = _rows_with_mask(cache.lung_masks, idx)
        # a listed shortcut mask with no shortcut drawn is a measurement (no shortcut there), not an absence
        listed = rows["shortcut_mask"].fillna("").astype(str).str.len().to_numpy() > 0
        shortcut_provided = listed | _rows_with_mask(cache.shortcut_masks, idx)
        has_lungs = bool(lung_provided.any())
        lung_source = "manifest" if has_lungs else ("estimated" if lung_estimate == "ellipses" else "none")
        cf = rows["counterfactual_index"].to_numpy() if "counterfactual_index" in rows else np.full(len(rows), -1)
        has_cf = cache.has_counterfactuals and bool((cf >= 0).any())
        return cls(frame=rows, manifest=frame, cache=cache, lung_source=lung_source,
                   has_shortcut_masks=bool(shortcut_provided.any()), has_counterfactuals=has_cf,
                   lung_provided=lung_provided, shortcut_provided=shortcut_provided, lung_estimate=lung_estimate)

    def __post_init__(self) -> None:
        n = len(self.frame)
        if self.lung_provided is None:  # built by hand: the global flags hold for every row
            self.lung_provided = np.full(n, self.lung_source == "manifest")
        if self.shortcut_provided is None:
            self.shortcut_provided = np.full(n, self.has_shortcut_masks)

    def images(self, rows: np.ndarray) -> torch.Tensor:
        return image_batch(self.cache.images, self.frame["cache_index"].to_numpy()[rows])

    def labelled(self, rows: np.ndarray) -> np.ndarray:
        """bool (B,): rows whose label is known."""
        from pipeline.protocol.shortcuts import labelled_mask

        return labelled_mask(self.frame)[rows]

    def labels(self, rows: np.ndarray) -> np.ndarray:
        """int64 (B,): 0/1, -1 where the label is unknown."""
        from pipeline.protocol.shortcuts import label_values

        return label_values(self.frame)[rows]

    def lung_status(self) -> np.ndarray:
        """Per row of the split: "provided" (cache mask), "estimated" (ellipses) or "absent"."""
        estimated = "estimated" if self.lung_estimate == "ellipses" else "absent"
        return np.where(self.lung_provided, "provided", estimated)

    def lung_counts(self) -> dict[str, int]:
        status = self.lung_status()
        return {k: int((status == k).sum()) for k in ("provided", "estimated", "absent")}

    def has_lungs(self, rows: np.ndarray) -> np.ndarray:
        """bool (B,): rows with a lung mask, provided or estimated."""
        return self.lung_status()[rows] != "absent"

    def has_shortcuts(self, rows: np.ndarray) -> np.ndarray:
        return np.asarray(self.shortcut_provided)[rows]

    def lungs(self, rows: np.ndarray) -> np.ndarray | None:
        """bool (B, S, S) (all False for a row without any) or None where no row has a mask nor an estimate."""
        status = self.lung_status()[rows]
        if not (status != "absent").any():
            return None
        size = self.cache.size
        out = np.zeros((len(rows), size, size), dtype=bool)
        provided = status == "provided"
        if provided.any():
            out[provided] = np.asarray(self.cache.lung_masks[self.frame["cache_index"].to_numpy()[rows][provided]]) > 0
        out[status == "estimated"] = ellipse_lungs(size)
        return out

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
        from pipeline.protocol.shortcuts import label_strings

        f = self.frame
        return (f["site"].astype(str) + "|" + f["position"].astype(str)).to_numpy() + "|" + label_strings(f)

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
