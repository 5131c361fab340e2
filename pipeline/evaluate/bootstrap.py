"""Seeded percentile bootstrap confidence intervals (resampling images)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def bootstrap_ci(
    metric: Callable[[np.ndarray, np.ndarray], float],
    y_true: np.ndarray,
    prob: np.ndarray,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float]:
    """Percentile interval of ``metric`` over ``n_resamples`` resamples with replacement.

    Resamples on which the metric is undefined (NaN, e.g. one class for AUROC) are skipped; if fewer than a tenth
    remain (or there is nothing to resample) the interval is (NaN, NaN).
    """
    y_true = np.asarray(y_true)
    prob = np.asarray(prob, dtype=np.float64)
    n = y_true.size
    if n == 0 or n_resamples <= 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    values = np.empty(n_resamples, dtype=np.float64)
    for i in range(n_resamples):
        idx = rng.integers(0, n, size=n)
        values[i] = metric(y_true[idx], prob[idx])
    values = values[np.isfinite(values)]
    if values.size < max(1, n_resamples // 10):
        return float("nan"), float("nan")
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(values, [alpha, 1.0 - alpha])
    return float(low), float(high)
