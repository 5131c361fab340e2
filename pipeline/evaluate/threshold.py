"""The decision threshold of one checkpoint, shared by evaluate and audit so one model has one accuracy.

The threshold maximises balanced accuracy (Youden's J) on the labelled rows of the pooled ``val`` split (the
training domains); without both labels there it is 0.5, and ``source`` says so.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
    from torch import nn

VAL_SOURCE = "val (training domains)"
DEFAULT_SOURCE = "default 0.5 (no val split with both labels)"


@dataclass(frozen=True)
class Threshold:
    """P(label = 1) >= value predicts positive; ``n*`` count the labelled val rows it was chosen on."""

    value: float
    source: str
    n: int
    n_pos: int
    n_neg: int

    def describe(self) -> dict[str, Any]:
        return {"value": self.value, "source": self.source, "n": self.n, "n_pos": self.n_pos, "n_neg": self.n_neg}


def val_rows(manifest: pd.DataFrame) -> pd.DataFrame:
    """The labelled rows of the ``val`` split (unlabelled rows cannot choose a threshold)."""
    from pipeline.shortcuts import labelled_mask

    val = manifest[manifest["split"] == "val"]
    return val[labelled_mask(val)]


def threshold_from_probabilities(y: np.ndarray, prob: np.ndarray) -> Threshold:
    """The threshold for labels ``y`` (int (n,)) and probabilities ``prob`` (n,) of the val rows."""
    from pipeline.evaluate.metrics import balanced_threshold

    y = np.asarray(y).astype(int)
    n_pos = int((y == 1).sum())
    if np.unique(y).size < 2:
        return Threshold(0.5, DEFAULT_SOURCE, int(y.size), n_pos, int(y.size - n_pos))
    return Threshold(balanced_threshold(y, prob), VAL_SOURCE, int(y.size), n_pos, int(y.size - n_pos))


def checkpoint_threshold(*, network: nn.Module, images: np.ndarray, manifest: pd.DataFrame,
                         batch_size: int = 64) -> Threshold:
    """The threshold of ``network`` on the manifest's labelled val rows (images from the cache array ``images``)."""
    from pipeline.evaluate.inputs import predict_proba
    from pipeline.shortcuts import label_values

    val = val_rows(manifest)
    y = label_values(val)
    if np.unique(y).size < 2:
        return threshold_from_probabilities(y, np.zeros(y.size))
    return threshold_from_probabilities(y, predict_proba(network, images, val["cache_index"].to_numpy(), batch_size))
