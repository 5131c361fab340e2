"""Score one model's probabilities on a manifest split: overall, per site, per site|position, mean and worst site.

Every number that cannot be measured is NaN here (null in JSON) with its reason in the block's ``not_measured``.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.errors import DataError
from pipeline.evaluate.bootstrap import bootstrap_ci
from pipeline.protocol.metrics import (
    Accuracy,
    Auroc,
    BalancedAccuracy,
    ConfusionMatrix,
    ExpectedCalibrationError,
    MajorityAccuracy,
    Metric,
    is_constant,
    majority_accuracy,
)
from pipeline.protocol.shortcuts import (
    ShortcutDirection,
    associated_values,
    conflict_aligned,
    direction_problem,
    headline_attribute,
    label_values,
    labelled_mask,
)

if TYPE_CHECKING:
    import pandas as pd

# the per-site metrics averaged in ``mean_site``; those that report a worst site are ranked in ``worst_site`` by
# their own direction (Metric.worst)
SUMMARY_METRICS: tuple[Metric, ...] = (
    Accuracy(), BalancedAccuracy(), Auroc(), ExpectedCalibrationError(), Accuracy(name="conflict_accuracy"),
    # the images the shortcut helps: their accuracy is not the question a worst site answers
    Accuracy(name="aligned_accuracy", reports_worst=False),
    MajorityAccuracy(),
)
SUMMARY_KEYS = tuple(metric.name for metric in SUMMARY_METRICS)
HEADLINE_KEYS = ("conflict_accuracy", "aligned_accuracy", "n_conflict", "n_aligned", "n_unknown")
# (conflict, aligned) bool masks per shortcut attribute, in the order of the attributes; the headline is the first
# measurable one (pipeline.protocol.shortcuts.headline_attribute)
ShortcutMasks = dict[str, tuple[np.ndarray, np.ndarray]]


def _seed_for(seed: int, key: str) -> int:
    from pipeline.seeding import seed_hash

    return seed_hash(seed, key)


def shortcut_block(*, accuracy: Accuracy, y: np.ndarray, prob: np.ndarray, threshold: float, conflict: np.ndarray,
                   aligned: np.ndarray, direction: ShortcutDirection | None = None) -> dict[str, Any]:
    """conflict/aligned accuracy of one attribute on one group (``y``, ``prob``, ``conflict``, ``aligned``: (n,)),
    with counts (``n_unknown``: rows in neither) and reasons for what is missing."""
    out: dict[str, Any] = {
        "conflict_accuracy": accuracy(y[conflict], prob[conflict], threshold),
        "aligned_accuracy": accuracy(y[aligned], prob[aligned], threshold),
        "n_conflict": int(conflict.sum()), "n_aligned": int(aligned.sum()),
        "n_unknown": int(y.size - conflict.sum() - aligned.sum()),
    }
    if direction is not None:
        out.update(associated_values(direction))  # empty sides when no direction is estimable
    problem = direction_problem(direction) if direction is not None else None
    reasons = {}
    for key, count, words in (("conflict_accuracy", "n_conflict", "shortcut-conflicting"),
                              ("aligned_accuracy", "n_aligned", "shortcut-aligned")):
        if out[count] == 0:
            reasons[key] = f"not measurable: {problem}" if problem else f"no {words} images in this group"
    out["not_measured"] = reasons
    return out


def headline_block(per_attr: dict[str, dict[str, Any]], attribute: str | None, reason: str | None) -> dict[str, Any]:
    """The group's headline conflict/aligned numbers: those of ``attribute`` (named as ``conflict_attribute``), or
    null with ``reason`` (naming every attribute and why) when no attribute is measurable."""
    if attribute is not None and attribute in per_attr:
        block = per_attr[attribute]
        return {"conflict_attribute": attribute, **{k: block[k] for k in HEADLINE_KEYS},
                "not_measured": dict(block["not_measured"])}
    reason = reason or "no shortcut attribute in the manifest"
    return {"conflict_attribute": None, **dict.fromkeys(HEADLINE_KEYS), "conflict_accuracy": float("nan"),
            "aligned_accuracy": float("nan"), "not_measured": dict.fromkeys(("conflict_attribute", *HEADLINE_KEYS), reason)}


class GroupScorer:
    """All per-group numbers for one model (thresholded ones at ``threshold``)."""

    def __init__(self, *, threshold: float, selection_rule: str, split: str, n_bootstrap: int = 1000,
                 seed: int = 0, ece_bins: int = 15, directions: dict[str, ShortcutDirection] | None = None) -> None:
        self.threshold = threshold
        self.selection_rule = selection_rule
        self.split = split
        self.n_bootstrap = n_bootstrap
        self.seed = seed
        self.directions = dict(directions or {})
        self.conflict_attribute, self.conflict_reason = headline_attribute(self.directions)
        self.accuracy = Accuracy()
        self.balanced_accuracy = BalancedAccuracy()
        self.auroc = Auroc()
        self.ece = ExpectedCalibrationError(ece_bins)
        self.confusion = ConfusionMatrix()

    def _auroc(self, key: str, y: np.ndarray, prob: np.ndarray, not_measured: dict[str, str]) -> tuple:
        n_pos = int((y == 1).sum())
        if np.unique(y).size < 2:
            reason = f"one class only ({'positive' if n_pos else 'negative'}): auroc undefined"
            not_measured.update(auroc=reason, auroc_ci=reason)
            return float("nan"), (float("nan"), float("nan"))
        ci = bootstrap_ci(self.auroc, y, prob, n_resamples=self.n_bootstrap, seed=_seed_for(self.seed, key))
        if not np.isfinite(ci[0]):
            not_measured["auroc_ci"] = (f"bootstrap interval undefined ({self.n_bootstrap} resamples; fewer than a "
                                        "tenth held both classes)")
        return self.auroc(y, prob), ci

    def __call__(self, key: str, y: np.ndarray, prob: np.ndarray, shortcuts: ShortcutMasks) -> dict[str, Any]:
        """Block of one group: ``y`` int (n,), ``prob`` P(label = 1) (n,), ``shortcuts`` masks over these rows."""
        y = np.asarray(y).astype(int)
        t = self.threshold
        not_measured: dict[str, str] = {}
        auroc, ci = self._auroc(key, y, prob, not_measured)
        per_attr = {attr: shortcut_block(accuracy=self.accuracy, y=y, prob=prob, threshold=t, conflict=c, aligned=a,
                                         direction=self.directions.get(attr))
                    for attr, (c, a) in shortcuts.items()}
        headline = headline_block(per_attr, self.conflict_attribute, self.conflict_reason)
        not_measured.update(headline.pop("not_measured"))
        n_pos = int((y == 1).sum())
        return {
            "n": int(y.size), "n_pos": n_pos, "n_neg": int(y.size - n_pos),
            "accuracy": self.accuracy(y, prob, t),
            "majority_accuracy": majority_accuracy(y),
            "constant_predictor": is_constant(np.asarray(prob) >= t),
            "threshold": t,
            "balanced_accuracy": self.balanced_accuracy(y, prob, t),
            "auroc": auroc, "auroc_ci": [ci[0], ci[1]],
            "ece": self.ece(y, prob),
            "confusion_matrix": self.confusion(y, prob, t),
            **headline,  # conflict_attribute, conflict/aligned accuracy and their counts
            "shortcuts": per_attr,
            "selection_rule": self.selection_rule, "split": self.split,
            "notes": list(not_measured.values()),
            "not_measured": not_measured,
        }


def shortcut_masks(frame: pd.DataFrame, directions: dict[str, ShortcutDirection]) -> ShortcutMasks:
    return {attr: conflict_aligned(frame, direction) for attr, direction in directions.items()}


def score_frame(frame: pd.DataFrame, prob: np.ndarray, scorer: GroupScorer) -> dict[str, Any]:
    """``overall``, ``per_site``, ``per_group`` (site|position), ``mean_site``, ``worst_site`` for the labelled rows
    ``frame`` (aligned with ``prob``); conflict/aligned follow ``scorer.directions`` (pipeline/protocol/shortcuts.py)."""
    if not labelled_mask(frame).all():
        raise DataError(f"evaluate: score_frame needs labelled rows only, got {int((~labelled_mask(frame)).sum())} "
                        "unlabelled; filter them with pipeline.protocol.shortcuts.labelled_mask first.")
    y = label_values(frame)
    prob = np.asarray(prob, dtype=np.float64)
    masks = shortcut_masks(frame, scorer.directions)
    sites = frame["site"].astype(str).to_numpy()
    groups = sites + "|" + frame["position"].astype(str).to_numpy()
    memo: dict[bytes, dict[str, Any]] = {}

    def block(key: str, sel: np.ndarray) -> dict[str, Any]:
        # the same rows (one site = overall, one position = the site) are scored once: bootstraps are the cost
        packed = np.packbits(sel).tobytes()
        if packed not in memo:
            memo[packed] = scorer(key, y[sel], prob[sel], {a: (c[sel], al[sel]) for a, (c, al) in masks.items()})
        return copy.deepcopy(memo[packed])

    out: dict[str, Any] = {"overall": block("overall", np.ones(y.size, dtype=bool)), "per_site": {}, "per_group": {}}
    for site in sorted(set(sites)):
        out["per_site"][site] = block(f"site:{site}", sites == site)
    for group in sorted(set(groups)):
        out["per_group"][group] = block(f"group:{group}", groups == group)
    out["mean_site"], out["worst_site"] = summarise_sites(out["per_site"])
    return out


def _no_site_reason(per_site: dict[str, dict[str, Any]], key: str) -> str:
    """Why no site measured ``key``: each site's own recorded reason (sites sharing one reason grouped)."""
    by_reason: dict[str, list[str]] = {}
    for site, block in per_site.items():
        why = (block.get("not_measured") or {}).get(key) or "no reason recorded"
        by_reason.setdefault(str(why), []).append(str(site))
    if not by_reason:
        return "no site scored"
    if len(by_reason) == 1:
        return next(iter(by_reason))  # one reason for every site: the reason itself
    return "no site has it measured: " + "; ".join(f"{', '.join(s)}: {r}" for r, s in by_reason.items())


def summarise_sites(per_site: dict[str, dict[str, Any]]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Unweighted mean over sites (NaN-skipping) and the worst site of each metric that reports one (the site
    named, by the metric's own direction); a key no site measured is NaN with its reason in ``not_measured``."""
    mean: dict[str, Any] = {}
    worst: dict[str, Any] = {}
    not_measured: dict[str, str] = {}
    for metric in SUMMARY_METRICS:
        key = metric.name
        values = {site: block[key] for site, block in per_site.items() if np.isfinite(block[key])}
        mean[key] = float(np.mean(list(values.values()))) if values else float("nan")
        if not values:
            not_measured[key] = _no_site_reason(per_site, key)
        if metric.reports_worst:
            found = metric.worst(values)
            if found is not None:
                worst[key] = {"site": found[0], "value": found[1]}
            else:
                worst[key] = {"site": None, "value": float("nan"), "not_measured": not_measured[key]}
    mean["not_measured"] = not_measured
    return mean, worst
