"""CORAL: DomainBed's mean + covariance distance, averaged over domain pairs."""

import numpy as np
import pytest
import torch

from pipeline.algorithms import build
from pipeline.algorithms.coral import coral_distance
from tests.helpers.networks import tiny_minibatches, tiny_networks


def _hand_distance(a: np.ndarray, b: np.ndarray) -> float:
    mean_term = np.mean((a.mean(0) - b.mean(0)) ** 2)
    cov_term = np.mean((np.cov(a, rowvar=False, ddof=1) - np.cov(b, rowvar=False, ddof=1)) ** 2)
    return float(mean_term + cov_term)


def test_coral_distance_small_case_equals_numpy_mean_and_covariance():
    a = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 2.0]])
    b = np.array([[1.0, 0.0], [1.0, 2.0], [3.0, 5.0], [0.0, 1.0]])
    # by hand: means (2, 2) vs (1.25, 2); mean term = (0.75^2 + 0) / 2
    assert np.mean((a.mean(0) - b.mean(0)) ** 2) == pytest.approx(0.28125)
    got = coral_distance(torch.tensor(a), torch.tensor(b)).item()
    assert got == pytest.approx(_hand_distance(a, b), rel=1e-12)


def test_coral_update_penalty_is_mean_over_domain_pairs():
    featurizer, head = tiny_networks()
    algorithm = build("coral", featurizer, head, 3, {"mmd_gamma": 2.0})
    batches = tiny_minibatches(0, sizes=(6, 5, 7))
    with torch.no_grad():
        feats = [algorithm.featurizer(x).double().numpy() for x, _ in batches]
    pairs = [(0, 1), (0, 2), (1, 2)]
    expected = np.mean([_hand_distance(feats[i], feats[j]) for i, j in pairs])
    out = algorithm.update(batches)
    assert out["penalty"] == pytest.approx(expected, rel=1e-5)
    assert out["loss"] == pytest.approx(out["nll"] + 2.0 * out["penalty"], rel=1e-6)
