"""DANN: discriminator and adversarial losses, alternating steps with separate optimizers."""

import pytest
import torch
import torch.nn.functional as F

from pipeline.algorithms import build
from pipeline.algorithms.dann import discriminator_loss
from tests.helpers.networks import tiny_minibatches, tiny_networks


def _snapshot(module):
    return [p.detach().clone() for p in module.parameters()]


def _changed(module, before):
    return [not torch.equal(p.detach(), b) for p, b in zip(module.parameters(), before, strict=True)]


def test_dann_discriminator_loss_linear_case_matches_closed_form_gradient_penalty():
    torch.manual_seed(0)
    a = torch.randn(3, 4, dtype=torch.float64)  # a linear discriminator d(z) = a z
    z = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 1, 0])
    out = z @ a.t()
    got = discriminator_loss(out, z, labels, grad_penalty=0.3)
    r = F.softmax(out, 1) - F.one_hot(labels, 3)
    input_grad = r @ a  # d CE_sum / d z_i = a^T (softmax_i - onehot_i)
    expected = F.cross_entropy(out, labels) + 0.3 * (input_grad**2).sum(1).mean()
    assert got.item() == pytest.approx(expected.item(), rel=1e-12)


def test_dann_update_alternates_generator_and_discriminator_steps():
    featurizer, head = tiny_networks()
    algorithm = build("dann", featurizer, head, 3, {"lambda": 0.5, "lr_g": 1e-2, "lr_d": 1e-2, "mlp_width": 8})
    batches = tiny_minibatches(0)
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    domains = torch.repeat_interleave(torch.arange(3), 8)
    with torch.no_grad():
        z = algorithm.featurizer(x)
        disc = F.cross_entropy(algorithm.discriminator(z), domains).item()
        nll = F.cross_entropy(algorithm.classifier(z), y).item()
    disc_before, feat_before = _snapshot(algorithm.discriminator), _snapshot(algorithm.featurizer)

    out = algorithm.update(batches)  # update 1 with d_steps_per_g_step = 1: a generator step
    assert out["disc_step"] == 0.0
    assert out["penalty"] == pytest.approx(disc, rel=1e-5)
    assert out["loss"] == pytest.approx(nll - 0.5 * disc, rel=1e-5)
    assert not any(_changed(algorithm.discriminator, disc_before))
    assert all(_changed(algorithm.featurizer, feat_before))

    disc_before, feat_before = _snapshot(algorithm.discriminator), _snapshot(algorithm.featurizer)
    head_before = _snapshot(algorithm.classifier)
    out = algorithm.update(batches)  # update 2: a discriminator step
    assert out["disc_step"] == 1.0
    assert all(_changed(algorithm.discriminator, disc_before))
    assert not any(_changed(algorithm.featurizer, feat_before) + _changed(algorithm.classifier, head_before))
    assert algorithm.disc_opt is not algorithm.optimizer
    assert algorithm.disc_opt.param_groups[0]["betas"] == (0.5, 0.9)
