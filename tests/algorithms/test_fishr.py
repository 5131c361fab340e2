"""Fishr against docs/design/fishr.md: the closed form of the head's per-sample gradients, and a step-by-step re-implementation."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from pipeline.algorithms import build
from pipeline.algorithms.fishr import domain_grad_stats
from tests.helpers.networks import tiny_minibatches, tiny_networks


def closed_form_grads(z: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """docs/design/fishr.md step 3: [softmax - onehot, (softmax - onehot) outer z] per sample."""
    r = F.softmax(logits, dim=1) - F.one_hot(y, logits.shape[1]).to(logits.dtype)
    return torch.cat([r, (r[:, :, None] * z[:, None, :]).flatten(1)], dim=1)


def reference_penalty(grads: torch.Tensor, sizes, ema_states: list, ema: float) -> torch.Tensor:
    """docs/design/fishr.md steps 4-6, written out per domain and per coordinate as the text says; updates ema_states."""
    values = []
    for e, g in enumerate(torch.split(grads, list(sizes))):
        v = ((g - g.mean(dim=0, keepdim=True)) ** 2).mean(dim=0)
        s = ema * ema_states[e] + (1 - ema) * v
        ema_states[e] = s.detach()
        values.append(s / (1 - ema))
    mean_over_domains = torch.stack(values).mean(dim=0)
    return torch.stack([((v - mean_over_domains) ** 2).mean() for v in values]).mean()


def test_fishr_penalty_equals_closed_form_with_featurizer_gradient():
    featurizer, head = tiny_networks(seed=1)
    algorithm = build("fishr", featurizer, head, 3, {"ema": 0.9}).double()
    batches = tiny_minibatches(0, sizes=(5, 7, 6), dtype=torch.float64)
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])

    z = algorithm.featurizer(x)
    logits = algorithm.classifier(z)
    grads = algorithm.per_sample_head_grads(z, logits, y)
    expected_grads = closed_form_grads(z, logits, y)
    torch.testing.assert_close(grads, expected_grads, rtol=1e-12, atol=1e-12)

    z = algorithm.featurizer(x)  # BackPACK frees the head's stored input after each backward: a fresh forward
    logits = algorithm.classifier(z)
    penalty = algorithm.penalty(z, logits, y, [5, 7, 6])
    states = [torch.zeros(expected_grads.shape[1], dtype=torch.float64) for _ in range(3)]
    expected = reference_penalty(expected_grads, [5, 7, 6], states, ema=0.9)
    assert penalty.item() > 0
    torch.testing.assert_close(penalty, expected, rtol=1e-12, atol=0)
    # the penalty's gradient reaches the featurizer (create_graph), and equals the closed form's
    got = torch.autograd.grad(penalty, list(algorithm.featurizer.parameters()), retain_graph=True)
    want = torch.autograd.grad(expected, list(algorithm.featurizer.parameters()))
    assert all(g.abs().sum() > 0 for g in got)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close(algorithm.grad_var_ema, torch.stack(states))


def test_domain_grad_stats_unequal_domains_gives_biased_variance():
    grads = torch.randn(9, 4, dtype=torch.float64) * 3 + 5
    stats = domain_grad_stats(grads, [2, 3, 4])
    assert stats.count.tolist() == [2, 3, 4]
    expected = torch.stack([g.var(dim=0, unbiased=False) for g in torch.split(grads, [2, 3, 4])])
    torch.testing.assert_close(stats.variance(), expected, rtol=1e-12, atol=1e-12)


def _reference_run(featurizer, head, steps, *, lam, anneal, ema, lr):
    """A hand-written Fishr (docs/design/fishr.md, closed-form gradients, full objective every step) -> per-step records."""
    params = list(featurizer.parameters()) + list(head.parameters())
    optimizer = torch.optim.Adam(params, lr=lr, weight_decay=0.0)
    n_params = sum(p.numel() for p in head.parameters())
    states = [torch.zeros(n_params, dtype=torch.float64) for _ in range(3)]
    records = []
    for step, batches in enumerate(steps):
        x = torch.cat([b[0] for b in batches])
        y = torch.cat([b[1] for b in batches])
        z = featurizer(x)
        logits = head(z)
        nll = F.cross_entropy(logits, y)
        penalty = reference_penalty(closed_form_grads(z, logits, y), [len(b[1]) for b in batches], states, ema)
        weight = lam if step >= anneal else 0.0
        if step == anneal and anneal != 0:
            optimizer = torch.optim.Adam(params, lr=lr, weight_decay=0.0)
        objective = nll + weight * penalty
        optimizer.zero_grad()
        objective.backward()
        optimizer.step()
        records.append(({"loss": objective.item(), "nll": nll.item(), "penalty": penalty.item()},
                        [p.detach().clone() for p in params]))
    return records


def test_fishr_update_matches_reference_step_by_step_across_adam_reset():
    hp = {"lambda": 50.0, "penalty_anneal_iters": 3, "ema": 0.9, "lr": 0.05}
    steps = [tiny_minibatches(s, sizes=(6, 5, 7), dtype=torch.float64) for s in range(7)]
    featurizer, head = tiny_networks(seed=2)
    ref_featurizer, ref_head = copy.deepcopy(featurizer).double(), copy.deepcopy(head).double()
    algorithm = build("fishr", featurizer, head, 3, hp).double()
    expected = _reference_run(ref_featurizer, ref_head, steps, lam=50.0, anneal=3, ema=0.9, lr=0.05)

    optimizers = []
    for step, (batches, (want_out, want_params)) in enumerate(zip(steps, expected, strict=True)):
        out = algorithm.update(batches)
        optimizers.append(algorithm.optimizer)
        for key in ("loss", "nll", "penalty"):
            assert out[key] == pytest.approx(want_out[key], rel=1e-9, abs=1e-15), (step, key)
        for p, w in zip(algorithm.parameters(), want_params, strict=True):
            torch.testing.assert_close(p.detach(), w, rtol=1e-9, atol=1e-12)
    assert expected[3][0]["loss"] > expected[3][0]["nll"]  # the penalty is on from step 3 ...
    assert expected[2][0]["loss"] == expected[2][0]["nll"]  # ... and off before
    # Adam re-created exactly once, at step == penalty_anneal_iters
    assert [optimizers[i] is optimizers[i + 1] for i in range(6)] == [True, True, False, True, True, True]


def test_fishr_update_anneal_zero_never_resets_adam():
    featurizer, head = tiny_networks()
    algorithm = build("fishr", featurizer, head, 3, {"penalty_anneal_iters": 0, "lambda": 10.0})
    first = algorithm.optimizer
    out = [algorithm.update(tiny_minibatches(s)) for s in range(2)]
    assert algorithm.optimizer is first
    assert out[0]["loss"] == pytest.approx(out[0]["nll"] + 10.0 * out[0]["penalty"], rel=1e-5)


def test_fishr_update_timm_backbone_penalty_reaches_backbone():
    """The pitfall of docs/design/fishr.md on the pinned BackPACK: a real backbone whose features require grad."""
    from pipeline.models import ModelConfig, build_network

    torch.manual_seed(0)
    network = build_network(ModelConfig(backbone="resnet10t", norm_layer="group"))
    algorithm = build("fishr", network.featurizer, network.classifier, 2, {"penalty_anneal_iters": 0})
    batches = [(torch.randn(4, 1, 32, 32), torch.tensor([0, 1, 0, 1])) for _ in range(2)]
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    z = algorithm.featurizer(x)
    logits = algorithm.classifier(z)
    penalty = algorithm.penalty(z, logits, y, [4, 4])
    first_conv = next(algorithm.featurizer.parameters())
    (grad,) = torch.autograd.grad(penalty, [first_conv])
    assert grad.abs().sum() > 0
    out = algorithm.update(batches)
    assert set(out) == {"loss", "nll", "penalty"}


def test_fishr_update_under_bf16_autocast_keeps_head_in_float32():
    featurizer, head = tiny_networks()
    algorithm = build("fishr", featurizer, head, 3, {"penalty_anneal_iters": 0})
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = algorithm.update(tiny_minibatches(0))
    assert algorithm.grad_var_ema.dtype == torch.float32 and algorithm.grad_var_ema.abs().sum() > 0
    assert out["penalty"] > 0 and out["loss"] == pytest.approx(out["nll"] + 1000.0 * out["penalty"], rel=1e-4)
