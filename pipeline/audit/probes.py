"""Linear probes: how well do frozen penultimate features predict site, position and age group?"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

PROBE_TARGETS = ("site", "position", "age_group")


@torch.no_grad()
def penultimate_features(network: nn.Module, x: torch.Tensor, batch_size: int = 64) -> np.ndarray:
    """``network.featurizer(x)`` (the input of the linear head), (N, D) float64."""
    featurizer = getattr(network, "featurizer", None)
    if featurizer is None:
        raise TypeError("penultimate_features needs a pipeline.models.Classifier (featurizer + classifier)")
    featurizer.eval()
    chunks = [featurizer(x[s:s + batch_size]).flatten(1) for s in range(0, x.shape[0], batch_size)]
    return torch.cat(chunks).double().numpy() if chunks else np.empty((0, 0))


class ProbeBalancedAccuracy:
    """Cross-validated (stratified k-fold) balanced accuracy of a standardised logistic regression.

    ``__call__(features (N, D), labels (N,)) -> (value, note)``: value NaN with a note when the target has one
    class, or a class has fewer images than 2 (classes with fewer than ``folds`` images reduce the folds)."""

    name = "probe_balanced_accuracy"
    higher_is_better = None  # high = the representation encodes the attribute; compare models, not against zero

    def __init__(self, folds: int = 5, seed: int = 0, max_iter: int = 2000) -> None:
        self.folds = folds
        self.seed = seed
        self.max_iter = max_iter

    def __call__(self, features: np.ndarray, labels: np.ndarray) -> tuple[float, str | None]:
        from sklearn.linear_model import LogisticRegression
        from sklearn.metrics import balanced_accuracy_score
        from sklearn.model_selection import StratifiedKFold, cross_val_predict
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler
        from threadpoolctl import threadpool_limits

        labels = np.asarray(labels).astype(str)
        keep = labels != "unknown"
        features, labels = features[keep], labels[keep]
        classes, counts = np.unique(labels, return_counts=True)
        if classes.size == 0:  # every value unknown: say so, not "one class only ([])"
            return float("nan"), f"every one of the {int(keep.size)} probed images has this attribute unknown"
        if classes.size < 2:
            return float("nan"), f"one class only ({classes.tolist()}): a probe needs two known classes"
        if counts.min() < 2:
            return float("nan"), f"a class has fewer than 2 images ({dict(zip(classes.tolist(), counts.tolist(), strict=True))})"
        folds = int(min(self.folds, counts.min()))
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=self.max_iter, random_state=self.seed))
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=self.seed)
        # one BLAS thread: on a busy 2-core machine OpenBLAS's thread pool made a 0.3 s fit take 40 s of wall time
        with threadpool_limits(limits=1):
            predicted = cross_val_predict(model, features, labels, cv=cv)
        note = f"{folds}-fold (smallest class has {counts.min()} images)" if folds < self.folds else None
        return float(balanced_accuracy_score(labels, predicted)), note


def probe_chance(labels: np.ndarray) -> float:
    """Balanced accuracy of guessing: 1 / number of known classes."""
    known = {v for v in np.asarray(labels).astype(str) if v != "unknown"}
    return 1.0 / len(known) if known else float("nan")
