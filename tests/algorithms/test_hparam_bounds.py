"""Degenerate hparams are refused up front: each algorithm's error names the hparam, its range and the value got;
the declared minimum is the true one (one below it, the statistic is NaN or identically 0)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from pipeline.algorithms import build, get_algorithm_class, list_algorithms
from pipeline.algorithms.coral import coral_distance
from pipeline.algorithms.irm import irm_penalty
from pipeline.errors import ConfigError
from tests.helpers.networks import tiny_minibatches, tiny_networks

# (algorithm, hparam, refused value, the range the message must state)
DEGENERATE = [
    ("erm", "batch_size", 0, ">= 1"),
    ("erm", "lr", 0.0, "> 0"),
    ("erm", "weight_decay", -1e-4, ">= 0"),
    ("fishr", "batch_size", 1, ">= 2"),
    ("fishr", "lambda", 0.0, "> 0"),
    ("fishr", "lambda", -5.0, "> 0"),
    ("fishr", "ema", 1.0, "in [0, 1)"),
    ("fishr", "ema", -0.1, "in [0, 1)"),
    ("fishr", "penalty_anneal_iters", -1, ">= 0"),
    ("coral", "batch_size", 1, ">= 2"),
    ("coral", "mmd_gamma", 0.0, "> 0"),
    ("dann", "lambda", 0.0, "> 0"),
    ("dann", "lr_d", 0.0, "> 0"),
    ("dann", "d_steps_per_g_step", 0, ">= 1"),
    ("dann", "grad_penalty", -1.0, ">= 0"),
    ("dann", "beta1", 1.0, "in [0, 1)"),
    ("dann", "mlp_depth", 1, ">= 2"),
    ("dann", "mlp_dropout", 1.0, "in [0, 1)"),
    ("irm", "batch_size", 1, ">= 2"),
    ("irm", "irm_lambda", 0.0, "> 0"),
    ("irm", "irm_penalty_anneal_iters", -3, ">= 0"),
    ("vrex", "vrex_lambda", -1.0, "> 0"),
    ("vrex", "vrex_penalty_anneal_iters", -1, ">= 0"),
    ("fish", "meta_lr", 0.0, "in (0, 1]"),
    ("fish", "meta_lr", 1.5, "in (0, 1]"),
    ("groupdro", "groupdro_eta", 0.0, "> 0"),
    ("groupdro", "batch_size", 0, ">= 1"),
]


@pytest.mark.parametrize(("name", "key", "value", "bound"), DEGENERATE)
def test_build_refuses_degenerate_hparam_naming_hparam_and_range(name, key, value, bound):
    with pytest.raises(ConfigError) as caught:
        build(name, *tiny_networks(), 3, {key: value})
    message = str(caught.value)
    assert message.startswith(f"{name}: hparam {key} must be {bound} (")
    assert f"got {value!r}" in message


def test_fishr_batch_size_one_message_is_the_issue_s_wording():
    with pytest.raises(ConfigError, match=r"^fishr: hparam batch_size must be >= 2 \(the per-domain gradient "
                                          r"variance is undefined for 1 sample\), got 1\."):
        build("fishr", *tiny_networks(), 3, {"batch_size": 1})


@pytest.mark.parametrize("name", sorted(set(list_algorithms()) - {"erm"}))
def test_penalised_algorithms_refuse_one_training_domain(name):
    with pytest.raises(ConfigError, match=rf"^{name}: training domains must number >= 2 \(.+\), got 1\. "):
        build(name, *tiny_networks(), 1, {})
    build(name, *tiny_networks(), 2, {})  # the minimum itself builds


def test_erm_trains_on_one_domain():
    erm = build("erm", *tiny_networks(), 1, {})
    assert math.isfinite(erm.update(tiny_minibatches(0, sizes=(4,)))["loss"])


@pytest.mark.parametrize("name", list_algorithms())
def test_every_numeric_hparam_declares_a_range_with_a_reason(name):
    cls = get_algorithm_class(name).HPARAMS
    for f in dataclasses.fields(cls):
        if type(f.default) is bool:
            continue  # a switch (Fishr's optimizer_reset): both values are valid, _convert refuses non-bools
        bound = f.metadata.get("bound")
        assert bound is not None and bound.why, f"{name}.{f.name} has no declared range"


@pytest.mark.parametrize("name", list_algorithms())
def test_random_search_draws_stay_inside_the_declared_ranges(name):
    cls = get_algorithm_class(name).HPARAMS
    for seed in range(200):
        cls.sample(seed).check_values(algorithm=name)  # raises on a draw outside its own range


def test_int_hparam_given_a_fraction_is_refused_not_truncated():
    with pytest.raises(ConfigError, match=r"hparam batch_size must be int, got 2\.5"):
        build("coral", *tiny_networks(), 3, {"batch_size": 2.5})
    assert build("coral", *tiny_networks(), 3, {"batch_size": 4.0}).hparams.batch_size == 4


def test_non_finite_float_hparam_is_refused():
    with pytest.raises(ConfigError, match=r"^vrex: hparam vrex_lambda must be a finite number, got inf"):
        build("vrex", *tiny_networks(), 3, {"vrex_lambda": float("inf")})


def test_minimum_batch_of_two_is_exact_for_coral_irm_fishr():
    """One sample: CORAL's covariance is NaN, IRM's penalty (its odd half is empty) and Fishr's variance are
    identically 0; two samples: finite, and non-zero."""
    one, two = torch.randn(1, 5), torch.randn(2, 5)
    assert torch.isnan(coral_distance(one, two)).item()
    assert math.isfinite(coral_distance(two, torch.randn(2, 5)).item())
    assert irm_penalty(torch.randn(1, 2), torch.tensor([1])).item() == 0.0
    assert irm_penalty(torch.tensor([[0.3, -0.2], [0.1, 0.5]]), torch.tensor([0, 1])).item() != 0.0

    fishr = build("fishr", *tiny_networks(), 3, {"penalty_anneal_iters": 0, "lambda": 1.0, "ema": 0.0})
    batches = tiny_minibatches(0, sizes=(1, 1, 1))
    x = torch.cat([b[0] for b in batches])
    y = torch.cat([b[1] for b in batches])
    z = fishr.featurizer(x)
    assert fishr.penalty(z, fishr.classifier(z), y, [1, 1, 1]).item() == 0.0  # silently ERM
    batches = tiny_minibatches(0, sizes=(2, 2, 2))
    z = fishr.featurizer(torch.cat([b[0] for b in batches]))
    y = torch.cat([b[1] for b in batches])
    assert fishr.penalty(z, fishr.classifier(z), y, [2, 2, 2]).item() > 0.0


@pytest.mark.parametrize("name", ["coral", "irm", "fishr"])
def test_batch_of_two_per_domain_updates_with_finite_terms(name):
    hparams = {"batch_size": 2, "penalty_anneal_iters": 0} if name == "fishr" else {"batch_size": 2}
    algorithm = build(name, *tiny_networks(), 3, hparams)
    terms = algorithm.update(tiny_minibatches(1, sizes=(2, 2, 2)))
    assert all(math.isfinite(v) for v in terms.values())


def _batch_norm_networks():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6), torch.nn.Tanh()), torch.nn.Linear(6, 2)


@pytest.mark.parametrize("name", ["groupdro", "fish"])
def test_per_domain_forward_with_batch_norm_refuses_batch_size_one(name):
    with pytest.raises(ConfigError, match=rf"^{name}: hparam batch_size must be >= 2 with a BatchNorm backbone .*"
                                          r"got 1\. Set hparams\.batch_size >= 2, or model\.norm_layer: group"):
        build(name, *_batch_norm_networks(), 3, {"batch_size": 1})
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):  # what the check prevents
        featurizer, _ = _batch_norm_networks()
        featurizer.train()(torch.randn(1, 4))
    algorithm = build(name, *tiny_networks(), 3, {"batch_size": 1})  # no BatchNorm: one image per domain is fine
    assert all(math.isfinite(v) for v in algorithm.update(tiny_minibatches(0, sizes=(1, 1, 1))).values())


def test_concatenating_algorithms_keep_batch_size_one_with_batch_norm():
    erm = build("erm", *_batch_norm_networks(), 3, {"batch_size": 1})  # BatchNorm sees 3 images (one per domain)
    assert math.isfinite(erm.update(tiny_minibatches(0, sizes=(1, 1, 1)))["loss"])


def test_fishr_schedule_that_never_switches_the_penalty_on_is_named():
    hparams = get_algorithm_class("fishr").HPARAMS.from_mapping({"penalty_anneal_iters": 300}, algorithm="fishr")
    assert hparams.inactive_penalty(steps=301, algorithm="fishr") is None
    text = hparams.inactive_penalty(steps=300, algorithm="fishr")
    assert text.startswith("fishr: hparam penalty_anneal_iters 300 >= steps 300: the penalty never switches on")
    irm = get_algorithm_class("irm").HPARAMS.from_mapping({"irm_penalty_anneal_iters": 900}, algorithm="irm")
    assert irm.inactive_penalty(steps=300, algorithm="irm") is None  # IRM's weight is 1 before annealing
