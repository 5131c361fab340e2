"""Each metric knows its direction and picks its own worst group (WILDS' Metric.worst); evaluate's worst_site
follows it."""

import math

import numpy as np
import pytest

from pipeline.evaluate.scoring import summarise_sites
from pipeline.protocol.metrics import (
    Accuracy,
    Auroc,
    BalancedAccuracy,
    ConfusionMatrix,
    ExpectedCalibrationError,
    MajorityAccuracy,
    is_constant,
    majority_accuracy,
)


def test_worst_is_the_lowest_for_higher_is_better_metrics():
    values = {"a": 0.8, "b": 0.55, "c": float("nan"), "d": 0.9}
    for metric in (Accuracy(), BalancedAccuracy(), Auroc(), MajorityAccuracy()):
        assert metric.worst(values) == ("b", 0.55)


def test_worst_calibration_is_the_highest_error():
    assert ExpectedCalibrationError().worst({"a": 0.02, "b": 0.31, "c": 0.1}) == ("b", 0.31)


def test_worst_ties_go_to_the_first_group_and_nothing_finite_is_none():
    assert Accuracy().worst({"x": 0.5, "y": 0.5}) == ("x", 0.5)
    assert Accuracy().worst({"x": float("nan"), "y": None}) is None
    with pytest.raises(TypeError, match="confusion_matrix"):
        ConfusionMatrix().worst({"x": 1.0})


def test_a_renamed_accuracy_keeps_its_math():
    y, prob = np.array([0, 1, 1]), np.array([0.2, 0.7, 0.4])
    conflict = Accuracy(name="conflict_accuracy")
    assert conflict.name == "conflict_accuracy" and conflict(y, prob, 0.5) == pytest.approx(2 / 3)


def test_majority_accuracy_and_constant_predictions():
    assert majority_accuracy(np.array([1, 1, 1, 0])) == 0.75 and math.isnan(majority_accuracy(np.array([])))
    assert MajorityAccuracy()(np.array([0, 0, 1])) == pytest.approx(2 / 3)
    assert is_constant(np.array([True, True])) and is_constant(np.array([False]))
    assert not is_constant(np.array([True, False])) and not is_constant(np.array([], dtype=bool))


def _block(accuracy, ece, conflict, aligned, auroc=0.7):
    return {"accuracy": accuracy, "balanced_accuracy": accuracy, "auroc": auroc, "ece": ece,
            "conflict_accuracy": conflict, "aligned_accuracy": aligned, "majority_accuracy": 0.5, "not_measured": {}}


def test_worst_site_uses_each_metrics_direction_and_names_only_the_ranked_metrics():
    per_site = {"h1": _block(0.9, 0.05, 0.3, 0.95), "h2": _block(0.6, 0.20, 0.7, 0.80),
                "h3": _block(0.7, 0.10, 0.5, 0.70, auroc=float("nan"))}
    mean, worst = summarise_sites(per_site)
    assert worst == {"accuracy": {"site": "h2", "value": 0.6}, "balanced_accuracy": {"site": "h2", "value": 0.6},
                     "auroc": {"site": "h1", "value": 0.7}, "conflict_accuracy": {"site": "h1", "value": 0.3}}
    assert mean["accuracy"] == pytest.approx(2.2 / 3) and mean["ece"] == pytest.approx(0.35 / 3)
    assert mean["auroc"] == pytest.approx(0.7) and mean["not_measured"] == {}


def test_worst_site_not_measured_anywhere_says_why():
    per_site = {"h1": {**_block(0.9, 0.05, float("nan"), 0.9), "not_measured": {"conflict_accuracy": "no images"}}}
    mean, worst = summarise_sites(per_site)
    assert worst["conflict_accuracy"]["site"] is None and math.isnan(worst["conflict_accuracy"]["value"])
    assert worst["conflict_accuracy"]["not_measured"] == "no images" == mean["not_measured"]["conflict_accuracy"]
