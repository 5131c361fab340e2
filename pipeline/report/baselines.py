"""Trivial baselines and sample sizes read from a metrics block, computed from what the block holds when the stage
did not write them: class counts, the always-majority accuracy, whether the model predicted one class only, and
the width of an accuracy's 95% interval.

A block is one of evaluate's per-site/per-group scores (:class:`~pipeline.artefacts.metrics.GroupScores`) or one
of audit's intervention blocks, typed or as its dict: ``n``, ``n_pos``, ``n_neg``, ``confusion_matrix``
``[[tn, fp], [fn, tp]]``, ``majority_accuracy``, ``constant_predictor``.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import BaseModel

from pipeline.report.tables import is_number

Z95 = 1.96  # two-sided 95% normal quantile


def fields(block: BaseModel | dict[str, Any] | None) -> dict[str, Any]:
    """A block's fields by name: the stages' score blocks share these names whichever artefact holds them."""
    if isinstance(block, BaseModel):
        return block.model_dump()
    return block or {}


def _matrix(block: dict[str, Any]) -> tuple[int, int, int, int] | None:
    """(tn, fp, fn, tp) from ``confusion_matrix``; None when absent or malformed."""
    matrix = block.get("confusion_matrix")
    try:
        (tn, fp), (fn, tp) = matrix
        values = tuple(int(v) for v in (tn, fp, fn, tp))
    except (TypeError, ValueError):
        return None
    return values if all(v >= 0 for v in values) else None


def class_counts(block: BaseModel | dict[str, Any] | None) -> tuple[int | None, int | None]:
    """(positives, negatives) from ``n_pos``/``n_neg``, else from the confusion matrix; (None, None) if unknown."""
    block = fields(block)
    if is_number(block.get("n_pos")) and is_number(block.get("n_neg")):
        return int(block["n_pos"]), int(block["n_neg"])
    matrix = _matrix(block)
    if matrix is None:
        return None, None
    tn, fp, fn, tp = matrix
    return fn + tp, tn + fp


def majority_accuracy(block: BaseModel | dict[str, Any] | None) -> float | None:
    """Accuracy of always predicting the block's majority label (the stage's value, else from its class counts)."""
    block = fields(block)
    if is_number(block.get("majority_accuracy")):
        return float(block["majority_accuracy"])
    pos, neg = class_counts(block)
    if pos is None or neg is None or pos + neg == 0:
        return None
    return max(pos, neg) / (pos + neg)


def constant_predictor(block: BaseModel | dict[str, Any] | None) -> bool | None:
    """True when every prediction in the block is one class (the stage's flag, else from the confusion matrix);
    None when neither says."""
    block = fields(block)
    if isinstance(block.get("constant_predictor"), bool):
        return block["constant_predictor"]
    matrix = _matrix(block)
    if matrix is None or sum(matrix) == 0:
        return None
    tn, fp, fn, tp = matrix
    return tn + fn == 0 or fp + tp == 0


def half_width(p: Any, n: Any) -> float | None:
    """Half-width of the normal-approximation 95% interval of a proportion ``p`` over ``n`` images (Wald; at
    p = 0 or 1 the width of p = 0.5 is used so that a tiny sample never reads as exact)."""
    if not (is_number(p) and is_number(n)) or n <= 0:
        return None
    p = float(p) if 0 < float(p) < 1 else 0.5
    return Z95 * math.sqrt(p * (1 - p) / float(n))


def beats_majority(accuracy: Any, majority: Any) -> bool | None:
    """Whether an accuracy is above the always-majority accuracy (None when either is unknown)."""
    if not (is_number(accuracy) and is_number(majority)):
        return None
    return float(accuracy) > float(majority)


def threshold_of(value: Any, source: Any = None) -> tuple[float | None, str | None]:
    """(threshold, where it came from) from a number (with ``source``) or a ``{value, source}`` dict."""
    if isinstance(value, dict):
        value, source = value.get("value"), value.get("source") or source
    return (float(value) if is_number(value) else None), (str(source) if source else None)


def threshold_text(value: Any, source: Any = None) -> str:
    """``threshold 0.47 from val (training domains)``; says so when the stage recorded none."""
    number, origin = threshold_of(value, source)
    if number is None:
        return "threshold not recorded"
    return f"threshold {number:.2f}" + (f" from {origin}" if origin else "")
