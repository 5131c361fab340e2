"""The Fishr distance logged at every evaluation (every algorithm): its value, its nulls, and the history line."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.algorithms import build
from pipeline.train import run
from pipeline.train.monitor import fishr_distance


def test_identical_domains_are_at_fishr_distance_zero():
    torch.manual_seed(0)
    head, z, y = nn.Linear(4, 2), torch.randn(6, 4), np.array([0, 1, 0, 1, 1, 0])
    out = fishr_distance(head, [z, z.clone()], [y, y.copy()])
    assert out["fishr_distance"] == pytest.approx(0.0, abs=1e-12)
    assert out["fishr_distance_relative"] == pytest.approx(0.0, abs=1e-6)


def test_fishr_distance_equals_fishr_penalty_without_moving_average():
    torch.manual_seed(1)
    featurizer, head = nn.Sequential(nn.Linear(3, 5), nn.Tanh()), nn.Linear(5, 2)
    fishr = build("fishr", featurizer, head, 2, {"ema": 0.0})
    z = torch.randn(10, 5)
    y = torch.tensor([0, 1, 1, 0, 1, 0, 0, 1, 1, 1])
    penalty = fishr.penalty(z, head(z), y, [4, 6], differentiable=False)
    out = fishr_distance(head, [z[:4], z[4:]], [y[:4].numpy(), y[4:].numpy()])
    assert out["fishr_distance"] == pytest.approx(float(penalty), rel=1e-5)
    assert out["fishr_distance"] > 0 and 0 < out["fishr_distance_relative"]


def test_one_usable_domain_gives_null_with_reason():
    out = fishr_distance(nn.Linear(2, 2), [torch.randn(3, 2), torch.randn(1, 2)], [np.array([0, 1, 0]), np.array([1])])
    assert out["fishr_distance"] is None and out["fishr_distance_relative"] is None
    assert "1 training domain(s)" in out["fishr_distance_not_measured"]["fishr_distance"]


def test_every_evaluation_line_logs_the_fishr_distance(ingest_dir, tmp_path):
    cfg = {"algorithm": "erm", "hparams": {"lr": 1e-3, "batch_size": 8},
           "model": {"backbone": "resnet10t", "norm_layer": "group"}, "augment": {"enabled": False},
           "steps": 4, "eval_every": 2, "checkpoint_every": 4, "device": "cpu", "seed": 0}
    result = run(ingest_dir=ingest_dir, config=cfg, out=tmp_path / "run", progress=False)
    lines = [json.loads(line) for line in result.history_path.read_text().splitlines()]
    evals = [line for line in lines if "val_acc" in line]
    assert [line["step"] for line in evals] == [2, 4]
    for line in evals:
        assert line["fishr_distance"] > 0 and line["fishr_distance_relative"] > 0
