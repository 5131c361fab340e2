"""GroupDRO: the exponentiated-gradient update of q and the q-weighted loss."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.algorithms import build
from tests.helpers.networks import tiny_minibatches, tiny_networks


def test_groupdro_update_q_small_case_matches_hand_computation():
    featurizer, head = tiny_networks()
    algorithm = build("groupdro", featurizer, head, 3, {"groupdro_eta": 0.5})
    q = np.ones(3)
    for seed in range(3):
        batches = tiny_minibatches(seed, sizes=(4, 6, 5))
        with torch.no_grad():
            risks = np.array([F.cross_entropy(algorithm.predict(x), y).item() for x, y in batches])
        q = q * np.exp(0.5 * risks)
        q = q / q.sum()
        out = algorithm.update(batches)
        np.testing.assert_allclose(algorithm.q.numpy(), q, rtol=1e-5)
        assert out["loss"] == pytest.approx(float(q @ risks), rel=1e-5)


def test_groupdro_update_worst_domain_gets_largest_weight():
    featurizer, head = tiny_networks()
    with torch.no_grad():
        head.bias.copy_(torch.tensor([3.0, -3.0]))  # predicts class 0 everywhere
    algorithm = build("groupdro", featurizer, head, 3, {"groupdro_eta": 1.0})
    batches = [(x, torch.full_like(y, int(e == 1))) for e, (x, y) in enumerate(tiny_minibatches(0))]
    algorithm.update(batches)  # domain 1 (all class 1) has by far the largest risk
    assert int(algorithm.q.argmax()) == 1
