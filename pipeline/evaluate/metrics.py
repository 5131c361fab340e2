"""Evaluate's decision threshold from scores: defined once in pipeline/decision_threshold.py (train, evaluate and
audit share it); the metrics themselves are defined in pipeline/protocol/metrics.py."""

from __future__ import annotations

from pipeline.decision_threshold import balanced_threshold

__all__ = ["balanced_threshold"]
