"""V-REx: variance of the per-domain risks."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.algorithms import build
from pipeline.algorithms.vrex import vrex_penalty
from tests.helpers.networks import tiny_minibatches, tiny_networks


def test_vrex_penalty_small_case_is_biased_variance():
    losses = torch.tensor([1.0, 2.0, 4.0])
    # mean 7/3; squared deviations 16/9, 1/9, 25/9; their mean 42/27
    assert vrex_penalty(losses).item() == pytest.approx(42 / 27, rel=1e-6)


def test_vrex_update_penalty_equals_variance_of_domain_risks():
    featurizer, head = tiny_networks()
    algorithm = build("vrex", featurizer, head, 3, {"vrex_lambda": 7.0, "vrex_penalty_anneal_iters": 0})
    batches = tiny_minibatches(3, sizes=(5, 9, 6))
    with torch.no_grad():
        risks = np.array([F.cross_entropy(algorithm.predict(x), y).item() for x, y in batches])
    out = algorithm.update(batches)
    assert out["penalty"] == pytest.approx(risks.var(), rel=1e-4)
    assert out["nll"] == pytest.approx(risks.mean(), rel=1e-5)
    assert out["loss"] == pytest.approx(risks.mean() + 7.0 * risks.var(), rel=1e-5)
