"""The shortcut ceiling: a logistic regression predicting the label from metadata alone (no pixel)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pipeline.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

METADATA_FEATURES = ("site", "view", "position", "age_group", "sex")


class MetadataBaseline:
    """One-hot(site, view, position, age group, sex) -> logistic regression, fitted on the train split of the
    training domains. Sites never seen in training get an all-zero site one-hot (``handle_unknown='ignore'``)."""

    def __init__(self, features: tuple[str, ...] = METADATA_FEATURES, seed: int = 0) -> None:
        self.features = features
        self.seed = seed
        self._pipeline = None
        self.n_train = 0

    def fit(self, frame: pd.DataFrame) -> MetadataBaseline:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import OneHotEncoder

        y = frame["label"].to_numpy().astype(int)
        if np.unique(y).size < 2:
            raise DataError(
                f"evaluate: the metadata baseline's training rows must hold both labels, got only {sorted(set(y))} "
                f"({len(y)} train-split rows)."
            )
        self._pipeline = make_pipeline(
            OneHotEncoder(handle_unknown="ignore"), LogisticRegression(max_iter=1000, random_state=self.seed)
        )
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):  # tiny problem: BLAS threads only cost time on a shared machine
            self._pipeline.fit(self._x(frame), y)
        self.n_train = int(len(frame))
        return self

    def _x(self, frame: pd.DataFrame) -> np.ndarray:
        return frame[list(self.features)].astype(str).to_numpy()

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        if self._pipeline is None:
            raise RuntimeError("MetadataBaseline.fit must be called first")
        if len(frame) == 0:
            return np.empty(0, dtype=np.float64)
        return self._pipeline.predict_proba(self._x(frame))[:, 1].astype(np.float64)
