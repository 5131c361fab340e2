"""The landscape part's mathematics: distances, the head's Hessian diagonal, per-sample gradients, Hutchinson."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.artefacts.landscape import QUANTITIES, Estimate, SiteLandscape
from pipeline.audit.landscape.curvature import (
    backpack_head_hessian_diagonal,
    head_gradients,
    head_hessian_diagonal,
    hutchinson_trace,
)
from pipeline.audit.landscape.statistics import (
    SiteSample,
    all_summaries,
    bootstrap_summaries,
    correlation,
    distance_matrices,
    moments,
)


def _sample(site, role, grads, loss=None, hessian=None):
    grads = np.asarray(grads, dtype=float)
    n = len(grads)
    return SiteSample(site=site, role=role, loss=np.asarray(loss if loss is not None else np.ones(n), dtype=float),
                      correct=np.ones(n, dtype=bool), grads=grads,
                      hessian=np.asarray(hessian if hessian is not None else np.abs(grads), dtype=float))


def test_identical_domains_are_at_distance_zero():
    rng = np.random.default_rng(0)
    grads, loss, hess = rng.normal(size=(12, 5)), rng.uniform(size=12), rng.uniform(size=(12, 5))
    a = _sample("a", "training", grads, loss, hess)
    b = _sample("b", "training", grads, loss, hess)
    c = _sample("c", "test", grads, loss, hess)
    for name, matrix in distance_matrices([moments(a), moments(b), moments(c)]).items():
        assert np.allclose(matrix, 0.0), name
    summary = all_summaries([moments(a), moments(b), moments(c)], np.array([True, True, False]))
    assert np.allclose(summary, 0.0)


def test_constructed_domains_give_the_closed_form_distances():
    # site a: g = (1, 0), (3, 0) -> G = (2, 0), V = (1, 0); site b: g = (0, 1), (0, 5) -> G = (0, 3), V = (0, 4)
    a = _sample("a", "training", [[1, 0], [3, 0]], loss=[0.2, 0.4], hessian=[[2, 0], [2, 0]])
    b = _sample("b", "test", [[0, 1], [0, 5]], loss=[1.0, 1.4], hessian=[[0, 1], [0, 1]])
    ma, mb = moments(a), moments(b)
    assert np.allclose(ma.G, [2, 0]) and np.allclose(ma.V, [1, 0]) and np.allclose(mb.V, [0, 4])
    mats = distance_matrices([ma, mb])
    assert mats["risk"][0, 1] == pytest.approx(0.9)
    assert mats["gradient_mean"][0, 1] == pytest.approx(math.sqrt(13) / 2.5)      # ||(2,-3)|| / mean(2, 3)
    assert mats["gradient_variance"][0, 1] == pytest.approx(math.sqrt(17) / 2.5)  # ||(1,-4)|| / mean(1, 4)
    assert mats["hessian_diagonal"][0, 1] == pytest.approx(math.sqrt(5) / 1.5)    # ||(2,-1)|| / mean(2, 1)
    summary = all_summaries([ma, mb], np.array([True, False]))
    assert np.isnan(summary[0, 0])  # one training site: no within-training pair
    assert summary[QUANTITIES.index("gradient_variance"), 1] == pytest.approx(math.sqrt(17) / 2.5)


def test_bootstrap_intervals_cover_the_point_and_collapse_without_spread():
    rng = np.random.default_rng(1)
    samples = [_sample(s, r, rng.normal(loc=k, size=(20, 4))) for k, (s, r) in
               enumerate([("a", "training"), ("b", "training"), ("c", "test")])]
    draws = bootstrap_summaries(samples, np.array([True, True, False]), n_boot=50, seed=0)
    assert draws.shape == (50, len(QUANTITIES), 3) and np.isfinite(draws).all()
    same = [_sample(s, "training", np.ones((6, 3))) for s in ("a", "b")]
    flat = bootstrap_summaries(same, np.array([True, True]), n_boot=5, seed=0)
    assert np.allclose(flat[:, QUANTITIES.index("gradient_mean"), 0], 0.0)


def test_correlation_is_nan_for_a_constant_vector_and_one_for_proportional():
    assert correlation(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 6.0])) == pytest.approx(1.0)
    assert math.isnan(correlation(np.ones(3), np.array([1.0, 2.0, 3.0])))


def test_closed_form_head_hessian_diagonal_equals_backpack_diag_hessian():
    torch.manual_seed(0)
    head = nn.Linear(6, 3)
    z, y = torch.randn(9, 6) * 2, torch.randint(0, 3, (9,))
    closed = head_hessian_diagonal(head(z), z).mean(dim=0)
    assert torch.allclose(closed, backpack_head_hessian_diagonal(head, z, y), atol=1e-6)
    # and the exact Hessian of the mean loss (autograd) has the same diagonal
    w, b = head.weight.detach(), head.bias.detach()

    def loss(flat):
        bb, ww = flat[:3], flat[3:].reshape(3, 6)
        return nn.functional.cross_entropy(z @ ww.T + bb, y)

    exact = torch.autograd.functional.hessian(loss, torch.cat([b, w.reshape(-1)]))
    assert torch.allclose(closed, torch.diagonal(exact), atol=1e-6)


def test_backpack_per_sample_gradients_equal_the_closed_form():
    torch.manual_seed(1)
    head = nn.Linear(4, 2)
    z, y = torch.randn(5, 4), torch.randint(0, 2, (5,))
    residual = torch.softmax(head(z), dim=1) - nn.functional.one_hot(y, 2)
    expected = torch.cat([residual, (residual[:, :, None] * z[:, None, :]).reshape(5, -1)], dim=1)
    assert torch.allclose(head_gradients(head, z, y), expected, atol=1e-6)
    assert not hasattr(head.weight, "grad_batch")  # the caller's head is not extended


def _tiny_network():
    torch.manual_seed(2)
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))


def _exact_trace(net, x, y) -> float:
    from torch.func import functional_call

    names = [k for k, _ in net.named_parameters()]
    shapes = [p.shape for _, p in net.named_parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for _, p in net.named_parameters()])

    def loss(flat):
        parts, i = {}, 0
        for k, s in zip(names, shapes, strict=True):
            parts[k] = flat[i:i + s.numel()].reshape(s)
            i += s.numel()
        return nn.functional.cross_entropy(functional_call(net, parts, (x,)), y)

    return float(torch.trace(torch.autograd.functional.hessian(loss, flat0)))


def test_hutchinson_trace_converges_to_the_exact_trace():
    net = _tiny_network()
    x, y = torch.randn(10, 3) * 2, torch.randint(0, 2, (10,))
    exact = _exact_trace(net, x, y)
    few = hutchinson_trace(net, x, y, probes=10, seed=0, batch_size=4)
    many = hutchinson_trace(net, x, y, probes=1000, seed=0, batch_size=4)
    assert many.probes == 1000 and many.se < few.se / 4  # the standard error shrinks like 1/sqrt(probes)
    assert abs(many.mean - exact) < 4 * many.se
    assert abs(many.mean - exact) < 0.1 * abs(exact)


def test_hutchinson_trace_refuses_zero_probes():
    with pytest.raises(ValueError, match="probes must be >= 1"):
        hutchinson_trace(_tiny_network(), torch.randn(2, 3), torch.zeros(2, dtype=torch.long), probes=0, seed=0)


def test_schema_refuses_nan():
    with pytest.raises(ValueError, match="finite or None"):
        Estimate(value=float("nan"))
    with pytest.raises(ValueError):
        SiteLandscape(site="a", role="training", splits=["train"], n=1, n_labelled=1, risk=float("inf"))
