"""Fishr on a CUDA GPU: BackPACK's per-sample head gradients and the penalty equal their CPU values (float64), and
under bf16 autocast the head stays float32 so the penalty moves only by the features' bf16 rounding.

Skipped without a GPU (CI has none); run on a GPU machine with ``pytest tests/algorithms/test_fishr_cuda.py``.
"""

from __future__ import annotations

import copy

import pytest
import torch

from pipeline.algorithms import build
from tests.helpers.networks import tiny_minibatches, tiny_networks

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _on(batches, device, dtype=None):
    return [(x.to(device, dtype or x.dtype), y.to(device)) for x, y in batches]


def test_fishr_penalty_and_update_on_cuda_equal_cpu_in_float64():
    featurizer, head = tiny_networks(seed=3)
    cpu = build("fishr", featurizer, head, 3, {"ema": 0.9, "lambda": 10.0, "penalty_anneal_iters": 0}).double()
    gpu = copy.deepcopy(cpu).cuda()
    for step in range(4):  # the moving averages and Adam's state carry over between steps
        batches = tiny_minibatches(step, sizes=(5, 7, 6), dtype=torch.float64)
        out_cpu, out_gpu = cpu.update(batches), gpu.update(_on(batches, "cuda"))
        for key in ("loss", "nll", "penalty"):
            assert out_gpu[key] == pytest.approx(out_cpu[key], rel=1e-9, abs=1e-12), (step, key)
    for (name, p_cpu), p_gpu in zip(cpu.state_dict().items(), gpu.state_dict().values(), strict=True):
        if torch.is_tensor(p_cpu) and p_cpu.is_floating_point():
            torch.testing.assert_close(p_gpu.cpu(), p_cpu, rtol=1e-9, atol=1e-12, msg=name)


def test_fishr_under_bf16_autocast_keeps_the_head_in_float32_and_the_penalty_close():
    featurizer, head = tiny_networks(seed=4, n_features=16)
    plain = build("fishr", featurizer, head, 3, {"ema": 0.9, "lambda": 10.0, "penalty_anneal_iters": 0}).cuda()
    mixed = copy.deepcopy(plain)
    batches = _on(tiny_minibatches(7, sizes=(16, 16, 16)), "cuda")
    out_plain = plain.update(batches)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out_mixed = mixed.update(batches)
    assert all(p.dtype == torch.float32 for p in mixed.parameters())
    assert all(torch.isfinite(p).all() for p in mixed.parameters())
    assert out_mixed["nll"] == pytest.approx(out_plain["nll"], rel=2e-2)
    assert out_mixed["penalty"] == pytest.approx(out_plain["penalty"], rel=1e-1, abs=1e-7)
    assert out_plain["penalty"] > 0
