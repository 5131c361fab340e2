"""Per-group classification metrics as small callable classes (config in ``__init__``, math in ``__call__``).

Every metric takes ``y_true`` (int 0/1, shape (N,)), ``prob`` (float, P(label = 1), shape (N,)) and the decision
``threshold`` and returns a float64 (NaN where undefined, e.g. AUROC with one class). scikit-learn does the math.
"""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.metrics import balanced_accuracy_score, confusion_matrix, roc_auc_score


def _predict(prob: np.ndarray, threshold: float) -> np.ndarray:
    return (np.asarray(prob, dtype=np.float64) >= threshold).astype(np.int64)


class Accuracy:
    name = "accuracy"
    higher_is_better = True

    def __call__(self, y_true: np.ndarray, prob: np.ndarray, threshold: float = 0.5) -> float:
        y_true = np.asarray(y_true)
        if y_true.size == 0:
            return float("nan")
        return float(np.mean(_predict(prob, threshold) == y_true))


class BalancedAccuracy:
    """Mean recall of the classes present (with one class present: that class's recall)."""

    name = "balanced_accuracy"
    higher_is_better = True

    def __call__(self, y_true: np.ndarray, prob: np.ndarray, threshold: float = 0.5) -> float:
        y_true = np.asarray(y_true)
        if y_true.size == 0:
            return float("nan")
        with warnings.catch_warnings():  # one class present: sklearn warns, the recall of that class is still right
            warnings.simplefilter("ignore")
            return float(balanced_accuracy_score(y_true, _predict(prob, threshold)))


class Auroc:
    """Threshold-free; NaN when only one class is present."""

    name = "auroc"
    higher_is_better = True

    def __call__(self, y_true: np.ndarray, prob: np.ndarray, threshold: float = 0.5) -> float:
        y_true = np.asarray(y_true)
        if np.unique(y_true).size < 2:
            return float("nan")
        return float(roc_auc_score(y_true, np.asarray(prob, dtype=np.float64)))


class ExpectedCalibrationError:
    """ECE over ``n_bins`` equal-width bins of the positive-class probability: sum_b n_b/N |mean(y) - mean(p)|."""

    name = "ece"
    higher_is_better = False

    def __init__(self, n_bins: int = 15) -> None:
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


class ConfusionMatrix:
    """``[[tn, fp], [fn, tp]]`` as nested int lists (both labels always present, so the shape is fixed)."""

    name = "confusion_matrix"
    higher_is_better = None

    def __call__(self, y_true: np.ndarray, prob: np.ndarray, threshold: float = 0.5) -> list[list[int]]:
        return confusion_matrix(np.asarray(y_true), _predict(prob, threshold), labels=[0, 1]).tolist()


def balanced_threshold(y_true: np.ndarray, prob: np.ndarray) -> float:
    """The threshold maximising balanced accuracy (Youden's J) on ``(y_true, prob)``; 0.5 if one class only."""
    from sklearn.metrics import roc_curve

    y_true = np.asarray(y_true)
    if np.unique(y_true).size < 2:
        return 0.5
    fpr, tpr, thresholds = roc_curve(y_true, np.asarray(prob, dtype=np.float64))
    finite = np.isfinite(thresholds)
    best = int(np.argmax(np.where(finite, tpr - fpr, -np.inf)))
    return float(min(max(thresholds[best], 0.0), 1.0))
