"""The decision threshold of one checkpoint, shared by train (stored with a selected checkpoint), evaluate and audit
so one model has one accuracy. Neutral: no stage package is imported (pipeline/decision_threshold.py; not the report
verdict's thresholds, which are pipeline/protocol/thresholds.py).

The threshold maximises balanced accuracy (Youden's J) on the labelled ``val`` rows of the MODEL's training domains
(``meta["trained_on"]``, pipeline/compat.py), and only when the ingest is the model's training ingest (same inputs
hash) and the scored split is not ``val`` itself: a threshold is never chosen on the rows it then scores, nor on
sites the model never trained on. Otherwise the threshold train stored with the model (``meta["threshold"]``, chosen
on its own val rows at the selected step), else 0.5; ``source`` says which and why, ``warning`` is set for 0.5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from torch import nn

VAL_SOURCE = "val (training domains)"
DEFAULT_SOURCE = "the 0.5 default (no val split with both labels)"
THRESHOLD_META_KEY = "threshold"  # model meta: {"value", "source", "n", "n_pos", "n_neg", "step"} (train)


@dataclass(frozen=True)
class Threshold:
    """P(label = 1) >= value predicts positive; ``n*`` count the labelled val rows it was chosen on."""

    value: float
    source: str
    n: int
    n_pos: int
    n_neg: int
    warning: str | None = None  # set when the value is the 0.5 default: thresholded numbers are not tuned

    def describe(self) -> dict[str, Any]:
        return {"value": self.value, "source": self.source, "n": self.n, "n_pos": self.n_pos, "n_neg": self.n_neg,
                "warning": self.warning}


def val_rows(manifest: pd.DataFrame) -> pd.DataFrame:
    """The labelled rows of the ``val`` split (unlabelled rows cannot choose a threshold)."""
    from pipeline.protocol.shortcuts import labelled_mask

    val = manifest[manifest["split"] == "val"]
    return val[labelled_mask(val)]


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


def threshold_from_probabilities(y: np.ndarray, prob: np.ndarray, *, source: str = VAL_SOURCE) -> Threshold:
    """The threshold for labels ``y`` (int (n,)) and probabilities ``prob`` (n,) of the val rows."""
    y = np.asarray(y).astype(int)
    n_pos = int((y == 1).sum())
    if np.unique(y).size < 2:
        return Threshold(0.5, DEFAULT_SOURCE, int(y.size), n_pos, int(y.size - n_pos))
    return Threshold(balanced_threshold(y, prob), source, int(y.size), n_pos, int(y.size - n_pos))


def checkpoint_threshold(*, network: nn.Module, images: np.ndarray, manifest: pd.DataFrame,
                         batch_size: int = 64, source: str = VAL_SOURCE) -> Threshold:
    """The threshold of ``network`` on the labelled val rows of ``manifest`` (images from the cache array
    ``images``); pass a manifest already restricted to the model's training domains (:func:`model_threshold`)."""
    from pipeline.data.inference import predict_proba
    from pipeline.protocol.shortcuts import label_values

    val = val_rows(manifest)
    y = label_values(val)
    if np.unique(y).size < 2:
        return threshold_from_probabilities(y, np.zeros(y.size))
    prob = predict_proba(network, images, val["cache_index"].to_numpy(), batch_size)
    return threshold_from_probabilities(y, prob, source=source)


def stored_threshold(meta: dict[str, Any]) -> dict[str, Any] | None:
    """The threshold train stored in the model meta, or None (older model files, or none chosen)."""
    stored = meta.get(THRESHOLD_META_KEY)
    if isinstance(stored, dict) and isinstance(stored.get("value"), (int, float)) and math.isfinite(stored["value"]):
        return stored
    return None


def fallback_threshold(meta: dict[str, Any], why: str) -> Threshold:
    """The stored threshold when there is one, else 0.5 with a warning; ``why`` (no own val rows here) is in both.
    ``source`` reads after "threshold 0.54 from ..." (the report, audit's console)."""
    stored = stored_threshold(meta)
    if stored is not None:
        step = stored.get("step")
        rows = "train's val rows" + (f" at step {step}" if step is not None else "")
        return Threshold(float(stored["value"]), f"{rows} (stored with the model, as {why})",
                         int(stored.get("n") or 0), int(stored.get("n_pos") or 0), int(stored.get("n_neg") or 0))
    source = f"the 0.5 default, as {why} and the model stores no threshold"
    return Threshold(0.5, source, 0, 0, 0, warning=f"threshold is {source}; thresholded metrics use 0.5, not a "
                                                    "chosen threshold")


def model_threshold(*, network: nn.Module, images: np.ndarray, manifest: pd.DataFrame, meta: dict[str, Any],
                    ingest_hash: str | None, split: str, batch_size: int = 64) -> Threshold:
    """The threshold of one model on an ingest (module docstring): ``meta`` is the model file's meta,
    ``ingest_hash`` the ingest's cache inputs hash, ``split`` the split being scored."""
    from pipeline.compat import model_profile
    from pipeline.manifest import domain_values

    profile, _ = model_profile({"meta": meta})
    if profile.ingest_hash is not None and ingest_hash is not None and profile.ingest_hash != ingest_hash:
        return fallback_threshold(meta, f"this ingest is not the model's training ingest: inputs hash "
                                        f"{ingest_hash[:12]}, the model's {profile.ingest_hash[:12]}")
    if split == "val":
        return fallback_threshold(meta, "the scored split is val, the threshold's own split: a threshold is never "
                                        "chosen on the rows it scores")
    if profile.domains is None:
        rows, source = manifest, "val (all sites: the model records no training domains)"
    else:
        columns = tuple(profile.domain_columns or ("domain",))
        rows = manifest[domain_values(manifest, columns).isin(profile.domains).to_numpy()]
        source = VAL_SOURCE
    chosen = checkpoint_threshold(network=network, images=images, manifest=rows, batch_size=batch_size, source=source)
    if chosen.source == DEFAULT_SOURCE:
        return fallback_threshold(meta, f"the val split has no labelled rows of both labels from the model's training "
                                        f"domains {profile.domains}")
    return chosen
