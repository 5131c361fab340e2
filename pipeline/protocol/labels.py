"""The one definition of the label: what the manifest's 0/1 mean and how every page and figure names them.

The manifest's ``label`` column (docs/ingest.md) is 1 for a COVID-19 finding, 0 for no finding and empty (pd.NA)
when unknown; the ingest config maps each collection's own spellings (``positive_values``/``negative_values``) onto
these two values. Everything downstream (train, evaluate, audit, report) reads only 0/1 and names them from here.
"""

from __future__ import annotations

from typing import Any

POSITIVE = 1  # the manifest's label for a COVID-19 finding: the "positive" class, P(label = 1) is what a model outputs
NEGATIVE = 0  # the manifest's label for no finding
POSITIVE_NAME = "COVID-19"
NEGATIVE_NAME = "no finding"
UNKNOWN_NAME = "label unknown"
LABEL_NAMES: dict[int, str] = {NEGATIVE: NEGATIVE_NAME, POSITIVE: POSITIVE_NAME}


def label_name(value: Any) -> str:
    """The name of a manifest label (0/1, as int or text such as ``"1"``); :data:`UNKNOWN_NAME` for None, NaN,
    ``"unknown"`` or anything that is not 0/1."""
    try:
        return LABEL_NAMES.get(int(value), UNKNOWN_NAME)
    except (TypeError, ValueError):
        return UNKNOWN_NAME


def class_counts_text(n_pos: int, n_neg: int) -> str:
    """``"48 COVID-19 / 72 no finding"``: a sample's classes as tables print them (thousands separated)."""
    return f"{n_pos:,} {POSITIVE_NAME} / {n_neg:,} {NEGATIVE_NAME}"
