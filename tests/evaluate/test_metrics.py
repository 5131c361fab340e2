import numpy as np
import pytest

from pipeline.decision_threshold import balanced_threshold
from pipeline.evaluate.bootstrap import bootstrap_ci
from pipeline.protocol.metrics import Accuracy, Auroc, BalancedAccuracy, ConfusionMatrix, ExpectedCalibrationError


def _scores(n=200, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    prob = np.clip(0.5 + 0.3 * (y - 0.5) + 0.25 * rng.standard_normal(n), 0, 1)
    return y, prob


def test_auroc_single_class_returns_nan():
    assert np.isnan(Auroc()(np.ones(5), np.linspace(0, 1, 5)))


def test_accuracy_and_balanced_accuracy_use_the_threshold():
    y = np.array([0, 0, 0, 1])
    prob = np.array([0.1, 0.2, 0.6, 0.7])
    assert Accuracy()(y, prob, 0.5) == 0.75
    assert Accuracy()(y, prob, 0.65) == 1.0
    assert BalancedAccuracy()(y, prob, 0.5) == pytest.approx((2 / 3 + 1) / 2)
    assert ConfusionMatrix()(y, prob, 0.5) == [[2, 1], [0, 1]]


def test_balanced_accuracy_single_class_is_that_class_recall():
    assert BalancedAccuracy()(np.zeros(4, dtype=int), np.array([0.1, 0.2, 0.9, 0.3]), 0.5) == 0.75


def test_ece_calibrated_probabilities_near_zero_and_overconfident_high():
    rng = np.random.default_rng(0)
    prob = rng.random(20000)
    y = (rng.random(20000) < prob).astype(int)
    assert ExpectedCalibrationError(15)(y, prob) < 0.02
    assert ExpectedCalibrationError(15)(y, (prob > 0.5).astype(float)) > 0.2


def test_ece_edges_zero_and_one_land_in_bins():
    assert ExpectedCalibrationError(15)(np.array([0, 1]), np.array([0.0, 1.0])) == 0.0


def test_balanced_threshold_separates_shifted_scores():
    y = np.array([0] * 10 + [1] * 10)
    prob = np.concatenate([np.linspace(0.70, 0.79, 10), np.linspace(0.81, 0.9, 10)])
    t = balanced_threshold(y, prob)
    assert BalancedAccuracy()(y, prob, t) == 1.0
    assert balanced_threshold(np.ones(3), np.array([0.2, 0.4, 0.9])) == 0.5


def test_bootstrap_ci_contains_point_estimate():
    y, prob = _scores()
    point = Auroc()(y, prob)
    low, high = bootstrap_ci(Auroc(), y, prob, n_resamples=300, seed=0)
    assert low < point < high
    assert high - low < 0.3


def test_bootstrap_ci_is_seeded():
    y, prob = _scores(n=50)
    assert bootstrap_ci(Auroc(), y, prob, n_resamples=50, seed=3) == bootstrap_ci(Auroc(), y, prob,
                                                                                   n_resamples=50, seed=3)


def test_bootstrap_ci_undefined_metric_returns_nan():
    low, high = bootstrap_ci(Auroc(), np.ones(10), np.linspace(0, 1, 10), n_resamples=20)
    assert np.isnan(low) and np.isnan(high)
    assert np.isnan(bootstrap_ci(Auroc(), np.array([]), np.array([]))[0])
