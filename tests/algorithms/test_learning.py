"""Every algorithm learns an easy problem: the loss falls and accuracy on fresh data is far above chance."""

import pytest
import torch
import torch.nn.functional as F

from pipeline.algorithms import build, list_algorithms
from tests.helpers.networks import tiny_minibatches, tiny_networks

EASY_HPARAMS = {
    "erm": {"lr": 0.01}, "groupdro": {"lr": 0.01}, "fish": {"lr": 0.01},
    "fishr": {"lr": 0.01, "lambda": 10.0, "penalty_anneal_iters": 20},
    "irm": {"lr": 0.01, "irm_lambda": 1.0, "irm_penalty_anneal_iters": 20},
    "vrex": {"lr": 0.01, "vrex_lambda": 1.0, "vrex_penalty_anneal_iters": 20},
    "coral": {"lr": 0.01, "mmd_gamma": 0.1},
    "dann": {"lr_g": 0.01, "lr_d": 0.01, "lambda": 0.1, "mlp_width": 16},
}


@pytest.mark.parametrize("name", list_algorithms())
def test_algorithm_easy_problem_learns_above_chance(name):
    torch.manual_seed(0)
    algorithm = build(name, *tiny_networks(), 3, EASY_HPARAMS.get(name, {"lr": 0.01}))
    test = tiny_minibatches(1000, sizes=(100, 100, 100))
    x_test = torch.cat([x for x, _ in test])
    y_test = torch.cat([y for _, y in test])
    with torch.no_grad():
        nll_before = F.cross_entropy(algorithm.predict(x_test), y_test).item()
    for step in range(80):
        algorithm.update(tiny_minibatches(step, sizes=(16, 16, 16)))
    with torch.no_grad():
        logits = algorithm.predict(x_test)
    accuracy = (logits.argmax(1) == y_test).float().mean().item()
    assert F.cross_entropy(logits, y_test).item() < nll_before
    assert accuracy > 0.85, accuracy
