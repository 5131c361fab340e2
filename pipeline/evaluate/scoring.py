"""Score one model's probabilities on a manifest split: overall, per site, per site|position, mean and worst site."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.evaluate.bootstrap import bootstrap_ci
from pipeline.evaluate.metrics import (
    Accuracy,
    Auroc,
    BalancedAccuracy,
    ConfusionMatrix,
    ExpectedCalibrationError,
)

if TYPE_CHECKING:
    import pandas as pd

SUMMARY_KEYS = ("accuracy", "balanced_accuracy", "auroc", "ece", "conflict_accuracy", "aligned_accuracy")
WORST_KEYS = ("accuracy", "balanced_accuracy", "auroc", "conflict_accuracy")


def shortcut_conflict(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(conflict, aligned) boolean arrays for the position shortcut: conflict = COVID and erect, or no finding and
    supine; aligned = the reverse; unknown position is in neither."""
    label = frame["label"].to_numpy().astype(int)
    position = frame["position"].astype(str).to_numpy()
    erect, supine = position == "erect", position == "supine"
    conflict = ((label == 1) & erect) | ((label == 0) & supine)
    aligned = ((label == 1) & supine) | ((label == 0) & erect)
    return conflict, aligned


def _seed_for(seed: int, key: str) -> int:
    from pipeline.algorithms.hparams import seed_hash

    return seed_hash(seed, key)


class GroupScorer:
    """All per-group numbers for one model (thresholded ones at ``threshold``)."""

    def __init__(self, *, threshold: float, selection_rule: str, split: str, n_bootstrap: int = 1000,
                 seed: int = 0, ece_bins: int = 15) -> None:
        self.threshold = threshold
        self.selection_rule = selection_rule
        self.split = split
        self.n_bootstrap = n_bootstrap
        self.seed = seed
        self.accuracy = Accuracy()
        self.balanced_accuracy = BalancedAccuracy()
        self.auroc = Auroc()
        self.ece = ExpectedCalibrationError(ece_bins)
        self.confusion = ConfusionMatrix()

    def __call__(self, key: str, y: np.ndarray, prob: np.ndarray, conflict: np.ndarray,
                 aligned: np.ndarray) -> dict[str, Any]:
        y = np.asarray(y).astype(int)
        t = self.threshold
        notes: list[str] = []
        n_pos = int((y == 1).sum())
        if np.unique(y).size < 2:
            notes.append(f"one class only ({'positive' if n_pos else 'negative'}): auroc undefined")
            ci = (float("nan"), float("nan"))
        else:
            ci = bootstrap_ci(self.auroc, y, prob, n_resamples=self.n_bootstrap, seed=_seed_for(self.seed, key))
        if not conflict.any():
            notes.append("no shortcut-conflicting images")
        return {
            "n": int(y.size),
            "n_pos": n_pos,
            "n_neg": int(y.size - n_pos),
            "accuracy": self.accuracy(y, prob, t),
            "balanced_accuracy": self.balanced_accuracy(y, prob, t),
            "auroc": self.auroc(y, prob),
            "auroc_ci": [ci[0], ci[1]],
            "ece": self.ece(y, prob),
            "confusion_matrix": self.confusion(y, prob, t),
            "conflict_accuracy": self.accuracy(y[conflict], prob[conflict], t),
            "aligned_accuracy": self.accuracy(y[aligned], prob[aligned], t),
            "n_conflict": int(conflict.sum()),
            "n_aligned": int(aligned.sum()),
            "selection_rule": self.selection_rule,
            "split": self.split,
            "notes": notes,
        }


def score_frame(frame: pd.DataFrame, prob: np.ndarray, scorer: GroupScorer) -> dict[str, Any]:
    """``overall``, ``per_site``, ``per_group`` (site|position), ``mean_site``, ``worst_site`` for rows of ``frame``
    (aligned with ``prob``)."""
    y = frame["label"].to_numpy().astype(int)
    prob = np.asarray(prob, dtype=np.float64)
    conflict, aligned = shortcut_conflict(frame)
    sites = frame["site"].astype(str).to_numpy()
    groups = sites + "|" + frame["position"].astype(str).to_numpy()
    memo: dict[bytes, dict[str, Any]] = {}

    def block(key: str, sel: np.ndarray) -> dict[str, Any]:
        # the same rows (one site = overall, one position = the site) are scored once: bootstraps are the cost
        packed = np.packbits(sel).tobytes()
        if packed not in memo:
            memo[packed] = scorer(key, y[sel], prob[sel], conflict[sel], aligned[sel])
        return {**memo[packed], "notes": list(memo[packed]["notes"])}

    out: dict[str, Any] = {"overall": block("overall", np.ones(y.size, dtype=bool)), "per_site": {}, "per_group": {}}
    for site in sorted(set(sites)):
        out["per_site"][site] = block(f"site:{site}", sites == site)
    for group in sorted(set(groups)):
        out["per_group"][group] = block(f"group:{group}", groups == group)
    out["mean_site"], out["worst_site"] = summarise_sites(out["per_site"])
    return out


def summarise_sites(per_site: dict[str, dict[str, Any]]) -> tuple[dict[str, float], dict[str, Any]]:
    """Unweighted mean over sites (NaN-skipping) and the worst site per metric (the site named)."""
    mean: dict[str, float] = {}
    worst: dict[str, Any] = {}
    for key in SUMMARY_KEYS:
        values = {site: block[key] for site, block in per_site.items() if np.isfinite(block[key])}
        mean[key] = float(np.mean(list(values.values()))) if values else float("nan")
        if key in WORST_KEYS:
            if values:
                site = min(values, key=values.get)
                worst[key] = {"site": site, "value": values[site]}
            else:
                worst[key] = {"site": None, "value": float("nan")}
    return mean, worst
