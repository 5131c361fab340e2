"""Evaluate's decision threshold from scores. The metrics themselves are defined in pipeline/protocol/metrics.py."""

from __future__ import annotations

import numpy as np


def balanced_threshold(y_true: np.ndarray, prob: np.ndarray) -> float:
    """The threshold maximising balanced accuracy (Youden's J) on ``(y_true, prob)`` (int 0/1 and P(label = 1),
    both (N,)); 0.5 if one class only."""
    from sklearn.metrics import roc_curve

    y_true = np.asarray(y_true)
    if np.unique(y_true).size < 2:
        return 0.5
    fpr, tpr, thresholds = roc_curve(y_true, np.asarray(prob, dtype=np.float64))
    finite = np.isfinite(thresholds)
    best = int(np.argmax(np.where(finite, tpr - fpr, -np.inf)))
    return float(min(max(thresholds[best], 0.0), 1.0))
