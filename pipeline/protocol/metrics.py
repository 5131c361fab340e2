"""Per-group classification metrics (WILDS' ``Metric``): small callable classes, config in ``__init__``, math in
``__call__``, and each metric owns its notion of "worst" over groups (:meth:`Metric.worst`).

Every metric takes ``y_true`` (int 0/1, shape (N,)), ``prob`` (float, P(label = 1), shape (N,)) and the decision
``threshold`` and returns a float64 (NaN where undefined, e.g. AUROC with one class). scikit-learn does the math.
:func:`majority_accuracy` and :func:`is_constant` are the trivial-baseline facts evaluate and audit both state.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping

import numpy as np
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, roc_auc_score


def _predict(prob: np.ndarray, threshold: float) -> np.ndarray:
    return (np.asarray(prob, dtype=np.float64) >= threshold).astype(np.int64)


def majority_accuracy(y: np.ndarray) -> float:
    """Accuracy of always predicting the majority label of ``y`` (NaN for no rows): the trivial baseline."""
    y = np.asarray(y).astype(int)
    return float(max(int((y == 1).sum()), int((y == 0).sum())) / y.size) if y.size else float("nan")


def is_constant(predicted: np.ndarray) -> bool:
    """True when every thresholded prediction (bool (N,)) is one class (an accuracy then equals that class's
    share); False for no predictions."""
    predicted = np.asarray(predicted, dtype=bool)
    return bool(predicted.size and (predicted.all() or not predicted.any()))


class Metric:
    """One scalar metric. ``name``: its key in metrics.json (an instance may be renamed, e.g. the accuracy on
    shortcut-conflicting images is ``Accuracy(name="conflict_accuracy")``); ``higher_is_better``: decides which
    group is the worst; ``reports_worst``: whether evaluate names a worst site for it (``worst_site`` in
    metrics.json)."""

    name = "metric"
    higher_is_better: bool | None = True
    reports_worst = True

    def __init__(self, *, name: str | None = None, reports_worst: bool | None = None) -> None:
        if name is not None:
            self.name = name
        if reports_worst is not None:
            self.reports_worst = reports_worst

    def __call__(self, y_true: np.ndarray, prob: np.ndarray, threshold: float = 0.5) -> float:
        raise NotImplementedError

    def worst(self, values: Mapping[str, float]) -> tuple[str, float] | None:
        """``(group, value)`` of the worst group among ``values`` (group -> this metric's value): the lowest when
        higher is better, else the highest; NaN/None values are skipped, ties go to the first group in order;
        None when no group has a finite value. TypeError for a metric with no direction (a confusion matrix)."""
        if self.higher_is_better is None:
            raise TypeError(f"metric {self.name!r} has no better direction, so no worst group")
        finite = {g: float(v) for g, v in values.items() if v is not None and math.isfinite(float(v))}
        if not finite:
            return None
        pick = min if self.higher_is_better else max
        group = pick(finite, key=finite.__getitem__)
        return group, finite[group]


class Accuracy(Metric):
    name = "accuracy"

    def __call__(self, y_true: np.ndarray, prob: np.ndarray, threshold: float = 0.5) -> float:
        y_true = np.asarray(y_true)
        if y_true.size == 0:
            return float("nan")
        return float(np.mean(_predict(prob, threshold) == y_true))


class BalancedAccuracy(Metric):
    """Mean recall of the classes present (with one class present: that class's recall)."""

    name = "balanced_accuracy"

    def __call__(self, y_true: np.ndarray, prob: np.ndarray, threshold: float = 0.5) -> float:
        y_true = np.asarray(y_true)
        if y_true.size == 0:
            return float("nan")
        with warnings.catch_warnings():  # one class present: sklearn warns, the recall of that class is still right
            warnings.simplefilter("ignore")
            return float(balanced_accuracy_score(y_true, _predict(prob, threshold)))


class Auroc(Metric):
    """Threshold-free; NaN when only one class is present."""

    name = "auroc"

    def __call__(self, y_true: np.ndarray, prob: np.ndarray, threshold: float = 0.5) -> float:
        y_true = np.asarray(y_true)
        if np.unique(y_true).size < 2:
            return float("nan")
        return float(roc_auc_score(y_true, np.asarray(prob, dtype=np.float64)))


class ExpectedCalibrationError(Metric):
    """ECE over ``n_bins`` equal-width bins of the positive-class probability: sum_b n_b/N |mean(y) - mean(p)|.
    Lower is better; no worst site is named for it (metrics.json's ``worst_site`` ranks discrimination only)."""

    name = "ece"
    higher_is_better = False
    reports_worst = False

    def __init__(self, n_bins: int = 15, *, name: str | None = None) -> None:
        super().__init__(name=name)
        self.n_bins = n_bins

    def __call__(self, y_true: np.ndarray, prob: np.ndarray, threshold: float = 0.5) -> float:
        y_true = np.asarray(y_true, dtype=np.float64)
        prob = np.asarray(prob, dtype=np.float64)
        if y_true.size == 0:
            return float("nan")
        # bin i holds (i/n, (i+1)/n]; p = 0 goes to the first bin
        bins = np.clip(np.ceil(prob * self.n_bins).astype(np.int64) - 1, 0, self.n_bins - 1)
        total = 0.0
        for b in np.unique(bins):
            sel = bins == b
            total += sel.sum() / y_true.size * abs(y_true[sel].mean() - prob[sel].mean())
        return float(total)


class MajorityAccuracy(Metric):
    """:func:`majority_accuracy` as a metric (``prob`` and ``threshold`` unused): a property of the labels, the
    baseline a model must beat, so no worst site is named for it."""

    name = "majority_accuracy"
    reports_worst = False

    def __call__(self, y_true: np.ndarray, prob: np.ndarray | None = None, threshold: float = 0.5) -> float:
        return majority_accuracy(y_true)


class ConfusionMatrix(Metric):
    """``[[tn, fp], [fn, tp]]`` as nested int lists (both labels always present, so the shape is fixed)."""

    name = "confusion_matrix"
    higher_is_better = None
    reports_worst = False

    def __call__(self, y_true: np.ndarray, prob: np.ndarray, threshold: float = 0.5) -> list[list[int]]:
        return confusion_matrix(np.asarray(y_true), _predict(prob, threshold), labels=[0, 1]).tolist()
