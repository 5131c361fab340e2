"""Behavioural checks (METRICS.md): what happens to predictions when regions are replaced or the position flips.

Fill value everywhere: the image's mean outside-lung value (the whole image's mean where the lung mask is empty),
so lung-only, lungs-removed and region ablation replace regions the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.regions import SHORTCUT_KINDS

REST, LUNGS = 0, 1  # region ids in the ablation feature mask; shortcut kind code k gets id 1 + k


def fill_values(x: torch.Tensor, lungs: torch.Tensor) -> torch.Tensor:
    """(B, 1, 1, 1): each image's mean over the pixels outside its lungs (all pixels if it has no lung mask)."""
    outside = (~lungs).to(x.dtype)
    count = outside.sum(dim=(1, 2, 3), keepdim=True)
    mean_out = (x * outside).sum(dim=(1, 2, 3), keepdim=True) / count.clamp(min=1)
    mean_all = x.mean(dim=(1, 2, 3), keepdim=True)
    return torch.where(count > 0, mean_out, mean_all)


def lung_only(x: torch.Tensor, lungs: torch.Tensor) -> torch.Tensor:
    """Everything outside the lungs replaced by the fill value."""
    return torch.where(lungs, x, fill_values(x, lungs).expand_as(x))


def lungs_removed(x: torch.Tensor, lungs: torch.Tensor) -> torch.Tensor:
    """The lungs replaced by the fill value."""
    return torch.where(lungs, fill_values(x, lungs).expand_as(x), x)


@torch.no_grad()
def predicted_class(network: nn.Module, x: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    preds = [network(x[s:s + batch_size]).argmax(dim=1) for s in range(0, x.shape[0], batch_size)]
    return torch.cat(preds).numpy() if preds else np.empty(0, dtype=np.int64)


def intervention_predictions(network: nn.Module, x: torch.Tensor, lungs: torch.Tensor | None,
                             x_counterfactual: torch.Tensor | None = None,
                             batch_size: int = 64) -> dict[str, np.ndarray]:
    """Predicted classes on the original, lung-only, lungs-removed and counterfactual images (those available).
    ``x``: (B, 1, H, W); ``lungs``: bool (B, 1, H, W) or None."""
    out = {"original": predicted_class(network, x, batch_size)}
    if lungs is not None:
        out["lung_only"] = predicted_class(network, lung_only(x, lungs), batch_size)
        out["lungs_removed"] = predicted_class(network, lungs_removed(x, lungs), batch_size)
    if x_counterfactual is not None:
        out["counterfactual"] = predicted_class(network, x_counterfactual, batch_size)
    return out


def _accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(pred == y)) if y.size else float("nan")


def intervention_summary(preds: dict[str, np.ndarray], y: np.ndarray, has_cf: np.ndarray | None = None,
                         select: np.ndarray | None = None) -> dict[str, Any]:
    """accuracy, lung_only_accuracy, lungs_removed_accuracy, counterfactual_flip_rate (None where unavailable)."""
    sel = np.ones(y.size, dtype=bool) if select is None else select
    out: dict[str, Any] = {"n": int(sel.sum()), "accuracy": _accuracy(preds["original"][sel], y[sel])}
    for key, name in (("lung_only", "lung_only_accuracy"), ("lungs_removed", "lungs_removed_accuracy")):
        out[name] = _accuracy(preds[key][sel], y[sel]) if key in preds else None
    if "counterfactual" in preds and has_cf is not None:
        pair = sel & has_cf
        flips = preds["original"][pair] != preds["counterfactual"][pair]
        out["counterfactual_flip_rate"] = float(flips.mean()) if pair.any() else float("nan")
        out["n_counterfactual"] = int(pair.sum())
    else:
        out["counterfactual_flip_rate"] = None
        out["n_counterfactual"] = 0
    return out


def region_mask(lungs: np.ndarray | None, shortcuts: np.ndarray | None) -> np.ndarray:
    """Feature-mask ids (B, H, W) int64: rest 0, lungs 1, shortcut kind k -> 1 + k (shortcuts drawn over lungs)."""
    base = lungs if lungs is not None else shortcuts
    regions = np.zeros(base.shape, dtype=np.int64)
    if lungs is not None:
        regions[np.asarray(lungs, dtype=bool)] = LUNGS
    if shortcuts is not None:
        codes = np.asarray(shortcuts)
        regions[codes > 0] = 1 + codes[codes > 0].astype(np.int64)
    return regions


def region_names() -> dict[int, str]:
    return {REST: "rest", LUNGS: "lungs", **{1 + code: kind for code, kind in SHORTCUT_KINDS.items()}}


def region_ablation_drops(network: nn.Module, x: torch.Tensor, regions: np.ndarray,
                          target: torch.Tensor) -> np.ndarray:
    """Drop of the target logit per image and region id (B, n_ids), NaN where the image lacks that region.

    Captum ``FeatureAblation``: one forward per region id for the whole batch; baseline = the fill value."""
    from captum.attr import FeatureAblation

    mask = torch.from_numpy(regions).unsqueeze(1)
    baseline = fill_values(x, mask == LUNGS).expand_as(x).contiguous()
    n_ids = 2 + len(SHORTCUT_KINDS)
    with torch.no_grad():
        attr = FeatureAblation(network).attribute(x, baselines=baseline, target=target, feature_mask=mask,
                                                  perturbations_per_eval=1)
    attr = attr[:, 0].double().numpy()
    drops = np.full((x.shape[0], n_ids), np.nan)
    for b in range(x.shape[0]):
        for rid in np.unique(regions[b]):
            drops[b, rid] = attr[b][regions[b] == rid][0]  # every pixel of a region carries the region's drop
    return drops


def region_ablation_share(drops: np.ndarray, select: np.ndarray | None = None,
                          absolute: bool = False) -> dict[str, Any]:
    """Per region: drop / sum of the image's absolute drops, averaged over images (signed; ``absolute``: |drop|,
    which does not cancel between images where a region is evidence for and images where it is evidence against).
    A region an image lacks counts 0 there; images where nothing changed the logit are left out."""
    d = drops if select is None else drops[select]
    filled = np.nan_to_num(d, nan=0.0)
    if absolute:
        filled = np.abs(filled)
    total = np.abs(filled).sum(axis=1)
    valid = total > 0
    out: dict[str, Any] = {}
    for rid, name in region_names().items():
        out[name] = float(np.mean(filled[valid, rid] / total[valid])) if valid.any() else float("nan")
    out["n"] = int(d.shape[0])
    out["n_valid"] = int(valid.sum())
    return out
