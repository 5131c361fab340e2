"""The training loop on a CUDA GPU with bf16 autocast: ERM and Fishr learn, the run records its device, and an
interrupted run resumes (CUDA random state included). Skipped without a GPU (CI has none)."""

from __future__ import annotations

import json

import pytest
import torch

from pipeline.train import run
from pipeline.train.checkpoint import checkpoint_path

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _evals(out):
    lines = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    return [line for line in lines if "val_acc" in line]


@pytest.mark.parametrize("algorithm, hparams", [
    ("erm", {"lr": 1e-3, "batch_size": 16}),
    ("fishr", {"lr": 1e-3, "batch_size": 16, "lambda": 10.0, "penalty_anneal_iters": 20}),
])
def test_train_on_cuda_with_bf16_learns_and_records_device(ingest_dir, tmp_path, tiny_config, algorithm, hparams):
    cfg = tiny_config(algorithm=algorithm, hparams=hparams, steps=80, eval_every=20, checkpoint_every=40,
                      device="cuda", amp=True, augment={"enabled": False})
    result = run(ingest_dir=ingest_dir, config=cfg, out=tmp_path / "run", progress=False)
    summary = json.loads((result.out / "stage.json").read_text())
    assert summary["device"].startswith("cuda") and summary["amp"] is True
    best = max(_evals(result.out), key=lambda line: line["val_acc"])
    assert best["val_acc"] > 0.6 and not best["predicts_constant"]["val"]


def test_train_on_cuda_resumes_from_its_checkpoint(toy_ingest_dir, tmp_path, tiny_config):
    hparams = {"lr": 1e-3, "batch_size": 6, "lambda": 10.0, "penalty_anneal_iters": 3}
    cfg = tiny_config(algorithm="fishr", hparams=hparams, device="cuda", amp=True)
    out = tmp_path / "run"
    run(ingest_dir=toy_ingest_dir, config={**cfg, "steps": 3}, out=out, progress=False)
    state = torch.load(checkpoint_path(out), map_location="cpu", weights_only=False)
    assert "cuda" in state["rng"]  # the CUDA generators are saved with the CPU one
    resumed = run(ingest_dir=toy_ingest_dir, config=cfg, out=out, resume=True, progress=False)
    steps = [json.loads(line)["step"] for line in (resumed.out / "history.jsonl").read_text().splitlines()
             if "val_acc" not in line]
    assert steps == list(range(1, cfg["steps"] + 1))
