"""Fishr's two schedules: DomainBed's (weight 0 before penalty_anneal_iters, Adam re-created at the switch) and the
paper's Colored MNIST one (weight 1 before, Adam kept, the whole loss divided by the weight when it exceeds 1)."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from pipeline.algorithms import build
from pipeline.algorithms.fishr import FishrHParams
from pipeline.errors import ConfigError
from tests.helpers.networks import tiny_minibatches, tiny_networks

PAPER = {"warmup_penalty_weight": 1.0, "optimizer_reset": False, "loss_rescale": True}


def _terms(algorithm, batches):
    """(nll, penalty) as update computes them, on a deep copy (the moving averages of ``algorithm`` untouched)."""
    clone = copy.deepcopy(algorithm)
    x = torch.cat([x for x, _ in batches])
    y = torch.cat([y for _, y in batches])
    z = clone.featurizer(x)
    logits = clone.classifier(z)
    return F.cross_entropy(logits, y), clone.penalty(z, logits, y, [len(y_e) for _, y_e in batches])


@pytest.mark.parametrize(("lam", "anneal", "step_weights"), [
    (50.0, 2, [1.0, 1.0, 50.0, 50.0]),  # weight 1 before the switch: nothing divided; lambda after: divided by it
    (0.5, 0, [0.5, 0.5, 0.5, 0.5]),  # a weight <= 1 is never divided by (the paper's `if penalty_weight > 1.0`)
])
def test_paper_schedule_loss_is_rescaled_only_where_the_weight_exceeds_one(lam, anneal, step_weights):
    featurizer, head = tiny_networks(seed=3)
    algorithm = build("fishr", featurizer, head, 3,
                      {"lambda": lam, "penalty_anneal_iters": anneal, "ema": 0.5, "lr": 0.05, **PAPER}).double()
    for step, weight in enumerate(step_weights):
        batches = tiny_minibatches(step, sizes=(5, 6, 7), dtype=torch.float64)
        nll, penalty = _terms(algorithm, batches)
        out = algorithm.update(batches)
        assert out["nll"] == pytest.approx(nll.item(), rel=1e-12)
        assert out["penalty"] == pytest.approx(penalty.item(), rel=1e-12)
        assert penalty.item() > 0, step
        want = (nll + weight * penalty) / weight if weight > 1.0 else nll + weight * penalty
        assert out["loss"] == pytest.approx(want.item(), rel=1e-12), step


def test_paper_schedule_steps_are_the_rescaled_objective_s():
    """One step under the paper's schedule equals a hand-written Adam step on (nll + lambda * penalty) / lambda."""
    hp = {"lambda": 40.0, "penalty_anneal_iters": 0, "ema": 0.0, "lr": 0.05, **PAPER}
    featurizer, head = tiny_networks(seed=4)
    ref_featurizer, ref_head = copy.deepcopy(featurizer).double(), copy.deepcopy(head).double()
    algorithm = build("fishr", featurizer, head, 3, hp).double()
    batches = tiny_minibatches(0, sizes=(6, 6, 6), dtype=torch.float64)
    nll, penalty = _terms(algorithm, batches)  # ema 0: the penalty does not depend on the moving average
    algorithm.update(batches)

    reference = build("fishr", ref_featurizer, ref_head, 3, hp).double()
    ref_nll, ref_penalty = _terms_with_graph(reference, batches)
    params = list(ref_featurizer.parameters()) + list(ref_head.parameters())
    optimizer = torch.optim.Adam(params, lr=0.05)
    ((ref_nll + 40.0 * ref_penalty) / 40.0).backward()
    optimizer.step()
    torch.testing.assert_close(ref_nll.detach(), nll, rtol=1e-12, atol=0)
    for got, want in zip(algorithm.parameters(), params, strict=True):
        torch.testing.assert_close(got.detach(), want.detach(), rtol=1e-10, atol=1e-12)


def _terms_with_graph(algorithm, batches):
    x = torch.cat([x for x, _ in batches])
    y = torch.cat([y for _, y in batches])
    z = algorithm.featurizer(x)
    logits = algorithm.classifier(z)
    return F.cross_entropy(logits, y), algorithm.penalty(z, logits, y, [len(y_e) for _, y_e in batches])


@pytest.mark.parametrize(("optimizer_reset", "kept"), [(False, [True, True, True, True]),
                                                        (True, [True, True, False, True])])
def test_optimizer_reset_false_keeps_adam_and_its_moments_across_the_switch(optimizer_reset, kept):
    algorithm = build("fishr", *tiny_networks(), 3, {"lambda": 10.0, "penalty_anneal_iters": 2,
                                                     "optimizer_reset": optimizer_reset})
    optimizers, steps_taken = [algorithm.optimizer], []
    for step in range(4):
        algorithm.update(tiny_minibatches(step))
        optimizers.append(algorithm.optimizer)
        first_param = algorithm.optimizer.param_groups[0]["params"][0]
        steps_taken.append(int(algorithm.optimizer.state[first_param]["step"]))
    assert [optimizers[i] is optimizers[i + 1] for i in range(4)] == kept
    # Adam's step count (and with it its moments): 1..4 when kept, restarting at the switch (step 2) when reset
    assert steps_taken == ([1, 2, 3, 4] if not optimizer_reset else [1, 2, 1, 2])


def test_defaults_are_domainbed_s_schedule_and_stay_out_of_to_dict():
    hp = FishrHParams.from_mapping({"lambda": 100.0, "penalty_anneal_iters": 5})
    assert (hp.warmup_penalty_weight, hp.optimizer_reset, hp.loss_rescale) == (0.0, True, False)
    assert [hp.penalty_weight(s) for s in (0, 4, 5, 9)] == [0.0, 0.0, 100.0, 100.0]
    # configs written before these options existed record (and hash) the same hparams as before
    assert hp.to_dict() == {"lr": 5e-5, "weight_decay": 0.0, "batch_size": 32, "lambda": 100.0,
                            "penalty_anneal_iters": 5, "ema": 0.95}
    paper = FishrHParams.from_mapping({"lambda": 100.0, "penalty_anneal_iters": 5, **PAPER})
    assert {k: paper.to_dict()[k] for k in PAPER} == PAPER
    assert FishrHParams.from_mapping(paper.to_dict()) == paper
    assert [paper.penalty_weight(s) for s in (0, 4, 5)] == [1.0, 1.0, 100.0]


def test_default_schedule_keeps_domainbed_s_numbers():
    """The defaults and DomainBed's values written out give the same run (the options change nothing unset)."""
    steps = [tiny_minibatches(s) for s in range(4)]
    hp = {"lambda": 30.0, "penalty_anneal_iters": 2, "lr": 0.05}
    explicit = build("fishr", *tiny_networks(seed=5), 3, {**hp, "warmup_penalty_weight": 0.0,
                                                          "optimizer_reset": True, "loss_rescale": False})
    default = build("fishr", *tiny_networks(seed=5), 3, hp)
    for batches in steps:
        assert explicit.update(batches) == default.update(batches)
    out = default.update(steps[0])
    assert out["loss"] == pytest.approx(out["nll"] + 30.0 * out["penalty"], rel=1e-5)  # not divided by default


@pytest.mark.parametrize("value", ["false", 0, 0.5])
def test_switch_hparam_refuses_anything_but_true_or_false(value):
    with pytest.raises(ConfigError, match=rf"^train: hparam optimizer_reset must be true or false, got {value!r}"):
        build("fishr", *tiny_networks(), 3, {"optimizer_reset": value})


def test_warmup_penalty_weight_refuses_a_negative_weight():
    with pytest.raises(ConfigError, match=r"^fishr: hparam warmup_penalty_weight must be >= 0 \(a negative weight"):
        build("fishr", *tiny_networks(), 3, {"warmup_penalty_weight": -1.0})


def test_inactive_penalty_warning_names_the_warm_up_weight_under_the_paper_schedule():
    domainbed = FishrHParams.from_mapping({"penalty_anneal_iters": 400})
    assert "plain ERM" in domainbed.inactive_penalty(steps=400, algorithm="fishr")
    paper = FishrHParams.from_mapping({"penalty_anneal_iters": 400, **PAPER})
    message = paper.inactive_penalty(steps=400, algorithm="fishr")
    assert "plain ERM" not in message and "warm-up weight 1.0" in message and "lambda 1000.0" in message
    assert paper.inactive_penalty(steps=401, algorithm="fishr") is None


def test_paper_schedule_learns_a_separable_problem():
    """A few steps lower the cross-entropy and the penalty acts: the paper's schedule trains, it does not stall."""
    algorithm = build("fishr", *tiny_networks(seed=6), 3,
                      {"lambda": 100.0, "penalty_anneal_iters": 5, "lr": 0.02, "ema": 0.5, **PAPER})
    held_out = tiny_minibatches(1000, sizes=(64, 64, 64))
    x = torch.cat([x for x, _ in held_out])
    y = torch.cat([y for _, y in held_out])
    with torch.no_grad():
        before = F.cross_entropy(algorithm.predict(x), y).item()
    for step in range(60):
        algorithm.update(tiny_minibatches(step, sizes=(16, 16, 16)))
    with torch.no_grad():
        logits = algorithm.predict(x)
    after = F.cross_entropy(logits, y).item()
    accuracy = (logits.argmax(dim=1) == y).float().mean().item()
    assert after < 0.8 * before, (before, after)
    assert accuracy > 0.85, accuracy
