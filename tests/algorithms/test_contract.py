"""The contract every registered algorithm keeps: build -> update -> predict, resume, hparams."""

from __future__ import annotations

import copy
import dataclasses
import io
import math

import pytest
import torch

from pipeline.algorithms import build, get_algorithm_class, list_algorithms
from pipeline.errors import ConfigError
from tests.helpers.networks import tiny_minibatches, tiny_networks

PENALISED = {"fishr", "irm", "vrex", "coral", "dann"}
# small schedules so a few steps cross every annealing point
TINY_HPARAMS = {"fishr": {"penalty_anneal_iters": 3, "lambda": 10.0}, "irm": {"irm_penalty_anneal_iters": 3},
                "vrex": {"vrex_penalty_anneal_iters": 3}, "dann": {"mlp_width": 8, "d_steps_per_g_step": 2}}


def test_list_algorithms_has_the_seven_of_the_fishr_table():
    assert set(list_algorithms()) >= {"erm", "fishr", "coral", "dann", "irm", "vrex", "fish", "groupdro"}


@pytest.mark.parametrize("name", list_algorithms())
def test_algorithm_update_predict_returns_floats_and_logits(name):
    featurizer, head = tiny_networks()
    algorithm = build(name, featurizer, head, 3, TINY_HPARAMS.get(name, {}))
    out = algorithm.update(tiny_minibatches(0, sizes=(8, 6, 7)))
    assert "loss" in out and all(isinstance(v, float) and math.isfinite(v) for v in out.values())
    if name in PENALISED:
        assert {"nll", "penalty"} <= set(out)
    assert algorithm.predict(torch.randn(5, 4)).shape == (5, 2)
    assert int(algorithm.update_count) == 1


@pytest.mark.parametrize("name", list_algorithms())
def test_algorithm_state_dict_roundtrip_resumes_identically(name):
    hp = {"lr": 0.02, **TINY_HPARAMS.get(name, {})}
    steps = [tiny_minibatches(s) for s in range(6)]
    original = build(name, *tiny_networks(seed=0), 3, hp)
    for batches in steps[:2]:
        original.update(batches)
    buffer = io.BytesIO()
    torch.save(original.state_dict(), buffer)  # through bytes, as a checkpoint file
    buffer.seek(0)
    resumed = build(name, *tiny_networks(seed=1), 3, hp)  # other initial weights: all must come from the state
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    outs_original = [original.update(b) for b in steps[2:]]
    outs_resumed = [resumed.update(b) for b in steps[2:]]
    assert outs_resumed == outs_original
    for key, value in original.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(resumed.state_dict()[key], value), key


def test_algorithm_state_dict_carries_algorithm_state():
    fishr = build("fishr", *tiny_networks(), 3, {})
    fishr.update(tiny_minibatches(0))
    assert fishr.state_dict()["grad_var_ema"].abs().sum() > 0
    assert "q" in build("groupdro", *tiny_networks(), 3, {}).state_dict()
    assert "disc_opt" in build("dann", *tiny_networks(), 3, {}).state_dict()["_extra_state"]
    fish = build("fish", *tiny_networks(), 3, {})
    fish.update(tiny_minibatches(0))
    assert fish.state_dict()["_extra_state"]["inner_optimizer"]["state"]


@pytest.mark.parametrize("name", list_algorithms())
def test_hparams_from_mapping_unknown_name_lists_valid_ones(name):
    cls = get_algorithm_class(name).HPARAMS
    with pytest.raises(ConfigError) as err:
        build(name, *tiny_networks(), 3, {"lamda": 1.0})
    assert "lamda" in str(err.value)
    for valid in cls.names():
        assert valid in str(err.value)


@pytest.mark.parametrize("name", list_algorithms())
def test_hparams_sample_same_seed_same_values_other_seed_differs(name):
    cls = get_algorithm_class(name).HPARAMS
    assert cls.sample(3) == cls.sample(3)
    assert cls.sample(3) != cls.sample(4)
    for f in dataclasses.fields(cls):
        assert type(getattr(cls.sample(3), f.name)) is type(f.default), f.name
    build(name, *tiny_networks(), 3, cls.sample(5).to_dict())  # a sampled config builds


def test_hparams_domainbed_names_reach_the_algorithm():
    fishr = build("Fishr", *tiny_networks(), 3, {"lambda": 12.0, "penalty_anneal_iters": 7, "ema": 0.5})
    assert (fishr.hparams.lam, fishr.hparams.penalty_anneal_iters, fishr.hparams.ema) == (12.0, 7, 0.5)
    assert fishr.hparams.to_dict()["lambda"] == 12.0
    dann = build("DANN", *tiny_networks(), 3, {"lambda": 0.1, "beta1": 0.0})
    assert dann.hparams.lam == 0.1 and dann.optimizer.param_groups[0]["betas"] == (0.0, 0.9)


def test_build_unknown_algorithm_lists_valid_ones():
    with pytest.raises(ConfigError, match="fishr"):
        build("fisher", *tiny_networks(), 3, {})


def test_fishr_deepcopy_after_update_works():
    """The training loop may snapshot the algorithm: BackPACK must leave no graph tensors on the head."""
    fishr = build("fishr", *tiny_networks(), 3, {})
    fishr.update(tiny_minibatches(0))
    clone = copy.deepcopy(fishr)
    x = torch.randn(3, 4)
    assert torch.equal(clone.predict(x), fishr.predict(x))
