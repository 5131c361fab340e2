"""IRM: DomainBed's split-batch penalty and schedule."""

import numpy as np
import pytest
import torch

from pipeline.algorithms import build
from pipeline.algorithms.irm import irm_penalty
from tests.helpers.networks import tiny_minibatches, tiny_networks


def _hand_scale_grad(logits: np.ndarray, y: np.ndarray) -> float:
    """d/ds mean_i CE(s * logits_i, y_i) at s = 1 = mean_i (sum_c p_ic logit_ic - logit_iy)."""
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return float(np.mean((p * logits).sum(1) - logits[np.arange(len(y)), y]))


def test_irm_penalty_small_case_is_product_of_even_and_odd_half_gradients():
    logits = np.array([[2.0, -1.0], [0.5, 0.3], [-1.0, 1.5], [0.0, 2.0], [1.0, 1.0]])
    y = np.array([0, 1, 1, 0, 1])
    expected = _hand_scale_grad(logits[::2], y[::2]) * _hand_scale_grad(logits[1::2], y[1::2])
    got = irm_penalty(torch.tensor(logits), torch.tensor(y))
    assert got.item() == pytest.approx(expected, rel=1e-12)


def test_irm_update_weight_one_before_anneal_then_lambda_with_adam_reset():
    featurizer, head = tiny_networks()
    algorithm = build("irm", featurizer, head, 3, {"irm_lambda": 100.0, "irm_penalty_anneal_iters": 2})
    batches = tiny_minibatches(0)
    with torch.no_grad():
        logits = [algorithm.predict(x).double().numpy() for x, _ in batches]
    ys = [y.numpy() for _, y in batches]
    expected = np.mean([_hand_scale_grad(lg[::2], y[::2]) * _hand_scale_grad(lg[1::2], y[1::2])
                        for lg, y in zip(logits, ys, strict=True)])
    out = algorithm.update(batches)
    assert out["penalty"] == pytest.approx(expected, rel=1e-5)
    assert out["loss"] == pytest.approx(out["nll"] + 1.0 * out["penalty"], rel=1e-6)
    algorithm.update(tiny_minibatches(1))
    before = algorithm.optimizer
    out = algorithm.update(tiny_minibatches(2))
    assert algorithm.optimizer is not before
    assert out["loss"] == pytest.approx(out["nll"] + 100.0 * out["penalty"], rel=1e-5)
