"""Behavioural checks (docs/design/metrics.md): what happens to predictions when regions are replaced or the position flips.

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
def predicted_class(network: nn.Module, x: torch.Tensor, batch_size: int = 64,
                    threshold: float | None = None) -> np.ndarray:
    """int64 (B,): 1 where P(label = 1) >= ``threshold`` (the checkpoint's threshold, as evaluate scores it);
    the arg-max of the logits when ``threshold`` is None."""
    preds = []
    for s in range(0, x.shape[0], batch_size):
        logits = network(x[s:s + batch_size])
        if threshold is None:
            preds.append(logits.argmax(dim=1))
        else:
            preds.append((torch.softmax(logits.double(), dim=1)[:, 1] >= threshold).long())
    return torch.cat(preds).numpy() if preds else np.empty(0, dtype=np.int64)


def intervention_predictions(network: nn.Module, x: torch.Tensor, lungs: torch.Tensor | None,
                             x_counterfactual: torch.Tensor | None = None,
                             batch_size: int = 64, threshold: float | None = None) -> dict[str, np.ndarray]:
    """Predicted classes on the original, lung-only, lungs-removed and counterfactual images (those available).
    ``x``: (B, 1, H, W); ``lungs``: bool (B, 1, H, W) or None; every variant at the same ``threshold``."""
    out = {"original": predicted_class(network, x, batch_size, threshold)}
    if lungs is not None:
        out["lung_only"] = predicted_class(network, lung_only(x, lungs), batch_size, threshold)
        out["lungs_removed"] = predicted_class(network, lungs_removed(x, lungs), batch_size, threshold)
    if x_counterfactual is not None:
        out["counterfactual"] = predicted_class(network, x_counterfactual, batch_size, threshold)
    return out


def _accuracy(pred: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(pred == y)) if y.size else float("nan")


VARIANTS = (("original", "accuracy", ""), ("lung_only", "lung_only_accuracy", "lung_only_"),
            ("lungs_removed", "lungs_removed_accuracy", "lungs_removed_"))


def _variant(out: dict[str, Any], preds: dict[str, np.ndarray], y: np.ndarray, rows: np.ndarray,
             key: str, name: str, prefix: str) -> None:
    """One accuracy with its trivial baseline: ``<prefix>majority_accuracy`` and ``<prefix>constant_predictor``
    on the same rows (labelled, and with a lung mask for the lung variants)."""
    from pipeline.protocol.metrics import is_constant, majority_accuracy

    if key not in preds:
        out[name] = out[f"{prefix}majority_accuracy"] = out[f"{prefix}constant_predictor"] = None
        out["not_measured"][name] = "no lung mask for these images"
        return
    out[name] = _accuracy(preds[key][rows], y[rows])
    out[f"{prefix}majority_accuracy"] = majority_accuracy(y[rows])
    out[f"{prefix}constant_predictor"] = is_constant(preds[key][rows]) if rows.any() else None
    if not rows.any():
        out["not_measured"][name] = ("no labelled image" if key == "original" else
                                     "no labelled image with a lung mask")
        out["not_measured"][f"{prefix}constant_predictor"] = out["not_measured"][name]


def intervention_summary(preds: dict[str, np.ndarray], y: np.ndarray, has_cf: np.ndarray | None = None,
                         select: np.ndarray | None = None, has_lungs: np.ndarray | None = None) -> dict[str, Any]:
    """accuracy, lung_only_accuracy, lungs_removed_accuracy (labelled rows only: ``y`` is -1 where unknown; the
    lung variants also only rows with a lung mask, ``has_lungs``), each with its majority accuracy and constant
    flag, and counterfactual_flip_rate (label-free: every row). ``n_labelled``: the rows of ``accuracy``;
    ``n_labelled_lung_masks``: the rows of the lung variants; ``n_counterfactual``: the rows of the flip rate. None/NaN where unavailable, reason in not_measured."""
    sel = np.ones(y.size, dtype=bool) if select is None else select
    lungs = np.ones(y.size, dtype=bool) if has_lungs is None else has_lungs
    labelled = sel & (y >= 0)
    out: dict[str, Any] = {"n": int(sel.sum()), "n_labelled": int(labelled.sum()),
                           "n_lung_masks": int((sel & lungs).sum()),
                           "n_labelled_lung_masks": int((labelled & lungs).sum()), "not_measured": {}}
    for key, name, prefix in VARIANTS:
        _variant(out, preds, y, labelled & (lungs if key != "original" else True), key, name, prefix)
    if "counterfactual" in preds and has_cf is not None:
        pair = sel & has_cf
        flips = preds["original"][pair] != preds["counterfactual"][pair]
        out["counterfactual_flip_rate"] = float(flips.mean()) if pair.any() else float("nan")
        out["n_counterfactual"] = int(pair.sum())
        if not pair.any():
            out["not_measured"]["counterfactual_flip_rate"] = "no image of this group has a counterfactual"
    else:
        out["counterfactual_flip_rate"] = None
        out["n_counterfactual"] = 0
        out["not_measured"]["counterfactual_flip_rate"] = "the cache has no counterfactual arrays"
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


def region_ablation_share(drops: np.ndarray, select: np.ndarray | None = None, absolute: bool = False,
                          has_lungs: np.ndarray | None = None,
                          has_shortcuts: np.ndarray | None = None) -> dict[str, Any]:
    """Per region: drop / sum of the image's absolute drops, averaged over images (signed; ``absolute``: |drop|,
    which does not cancel between images where a region is evidence for and images where it is evidence against).

    A region an image lacks counts 0 there, but only on images whose mask could show it: ``lungs`` and
    ``outside_lungs`` (every non-lung region together) over images with a lung mask (``has_lungs`` (B,)), the
    shortcut kinds over images with a shortcut mask (``has_shortcuts`` (B,)); a region no image could show is
    None with its reason in ``not_measured`` (never 0.0). Images where nothing changed the logit are left out."""
    d = drops if select is None else drops[select]
    lung_ok = np.ones(d.shape[0], dtype=bool) if has_lungs is None else np.asarray(has_lungs)
    short_ok = np.ones(d.shape[0], dtype=bool) if has_shortcuts is None else np.asarray(has_shortcuts)
    if select is not None and has_lungs is not None:
        lung_ok = lung_ok[select]
    if select is not None and has_shortcuts is not None:
        short_ok = short_ok[select]
    filled = np.nan_to_num(d, nan=0.0)
    if absolute:
        filled = np.abs(filled)
    total = np.abs(filled).sum(axis=1)
    valid = total > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        shares = filled / total[:, None]
    measured = {REST: valid, LUNGS: valid & lung_ok, **{1 + c: valid & short_ok for c in SHORTCUT_KINDS}}
    out: dict[str, Any] = {}
    not_measured: dict[str, str] = {}
    counts: dict[str, int] = {}
    for rid, name in region_names().items():
        rows = measured[rid]
        out[name] = float(np.mean(shares[rows, rid])) if rows.any() else None
        counts[name] = int(rows.sum())
    outside = valid & lung_ok
    out["outside_lungs"] = float(np.mean(shares[outside][:, [r for r in region_names() if r != LUNGS]].sum(axis=1))
                                 ) if outside.any() else None
    counts["outside_lungs"] = int(outside.sum())
    for name, value in out.items():
        if value is None:
            not_measured[name] = _ablation_reason(name, valid, lung_ok, short_ok)
    out["n"] = int(d.shape[0])
    out["n_valid"] = int(valid.sum())
    out["n_measured"] = counts
    out["not_measured"] = not_measured
    return out


def _ablation_reason(name: str, valid: np.ndarray, lung_ok: np.ndarray, short_ok: np.ndarray) -> str:
    if name in ("lungs", "outside_lungs") and not lung_ok.any():
        return "no lung mask for these images"
    if name not in ("lungs", "outside_lungs", "rest") and not short_ok.any():
        return "no shortcut mask for these images"
    if not valid.any():
        return "no image: removing a region never changed the logit" if valid.size else "no image in this group"
    return "no image with both a mask and a logit change"
