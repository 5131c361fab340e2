import pytest
import torch

from pipeline.errors import ConfigError
from pipeline.train import run
from pipeline.train.checkpoint import checkpoint_path


def _algorithm_weights(out):
    return torch.load(checkpoint_path(out), map_location="cpu", weights_only=False)["algorithm"]


def _assert_identical(a, b, where):
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), where
        for key in a:
            _assert_identical(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert isinstance(b, (list, tuple)) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_identical(x, y, f"{where}[{i}]")
    else:
        assert a == b, where


def _history(out):
    return (out / "history.jsonl").read_text().splitlines()


@pytest.mark.parametrize("algorithm, hparams", [
    ("erm", {"lr": 1e-3, "batch_size": 6}),
    # The penalty switches on (Adam reset) in the second half; EMA buffers must survive the resume.
    ("fishr", {"lr": 1e-3, "batch_size": 6, "lambda": 10.0, "penalty_anneal_iters": 5, "ema": 0.9}),
    # Extra state beyond weights and the main optimizer: DANN's discriminator optimizer, Fish's inner Adam,
    # GroupDRO's domain weights, IRM/V-REx optimizer resets.
    ("dann", {"lr": 1e-3, "batch_size": 6, "lr_d": 1e-3, "lr_g": 1e-3}),
    ("fish", {"lr": 1e-3, "batch_size": 6}),
    ("groupdro", {"lr": 1e-3, "batch_size": 6}),
    ("irm", {"lr": 1e-3, "batch_size": 6, "irm_penalty_anneal_iters": 5}),
    ("vrex", {"lr": 1e-3, "batch_size": 6, "vrex_penalty_anneal_iters": 5}),
    ("coral", {"lr": 1e-3, "batch_size": 6}),
])
def test_resume_after_stop_matches_uninterrupted_run(toy_ingest_dir, tmp_path, tiny_config, algorithm, hparams):
    # dropout and augmentation on: the torch RNG and the loaders' augmentation seeds must be restored too
    cfg = tiny_config(algorithm=algorithm, hparams=hparams, steps=8, eval_every=4, checkpoint_every=2,
                      model={"backbone": "resnet10t", "norm_layer": "group", "drop_rate": 0.3})
    straight = run(ingest_dir=toy_ingest_dir, config=cfg, out=tmp_path / "straight", progress=False)
    run(ingest_dir=toy_ingest_dir, config={**cfg, "steps": 4}, out=tmp_path / "resumed", progress=False)
    resumed = run(ingest_dir=toy_ingest_dir, config=cfg, out=tmp_path / "resumed", resume=True, progress=False)

    assert resumed.final_step == straight.final_step == 8
    a, b = _algorithm_weights(straight.out), _algorithm_weights(resumed.out)
    assert any(isinstance(v, torch.Tensor) and v.dim() == 4 for v in a.values())  # conv weights are in there
    _assert_identical(a, b, "state")  # weights, buffers, optimizer moments, extra state
    from pipeline.models import load_model

    net_a, _, _ = load_model(straight.model_path)
    net_b, _, _ = load_model(resumed.model_path)
    for (name, pa), (_, pb) in zip(net_a.named_parameters(), net_b.named_parameters(), strict=True):
        assert torch.equal(pa, pb), name
    assert _history(straight.out) == _history(resumed.out)
    assert straight.selection == resumed.selection


def test_resume_from_mid_run_checkpoint_truncates_history(toy_ingest_dir, tmp_path, tiny_config):
    cfg = tiny_config(steps=6, eval_every=3, checkpoint_every=3)
    straight = run(ingest_dir=toy_ingest_dir, config=cfg, out=tmp_path / "straight", progress=False)
    killed = tmp_path / "killed"
    run(ingest_dir=toy_ingest_dir, config={**cfg, "steps": 3}, out=killed, progress=False)
    # What a kill after step 4 leaves behind: history lines past the last checkpoint, no stage.json.
    with open(killed / "history.jsonl", "a") as handle:
        handle.write('{"step": 4, "loss": 0.5}\n')
    (killed / "stage.json").unlink()
    run(ingest_dir=toy_ingest_dir, config=cfg, out=killed, resume=True, progress=False)
    assert _history(killed) == _history(straight.out)
    assert (killed / "stage.json").is_file()


def test_resume_with_changed_hparams_raises_config_error(toy_ingest_dir, tmp_path, tiny_config):
    cfg = tiny_config(steps=2, eval_every=2, checkpoint_every=2)
    run(ingest_dir=toy_ingest_dir, config=cfg, out=tmp_path / "run", progress=False)
    changed = {**cfg, "steps": 4, "hparams": {"lr": 1e-2, "batch_size": 8}}
    with pytest.raises(ConfigError, match="hparams"):
        run(ingest_dir=toy_ingest_dir, config=changed, out=tmp_path / "run", resume=True, progress=False)


def test_train_existing_run_without_resume_raises_config_error(toy_ingest_dir, tmp_path, tiny_config):
    cfg = tiny_config(steps=2, eval_every=2, checkpoint_every=2)
    run(ingest_dir=toy_ingest_dir, config=cfg, out=tmp_path / "run", progress=False)
    with pytest.raises(ConfigError, match="--resume"):
        run(ingest_dir=toy_ingest_dir, config=cfg, out=tmp_path / "run", progress=False)


def test_resume_after_sigkill_matches_uninterrupted_run(toy_ingest_dir, tmp_path, tiny_config):
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    cfg = tiny_config(steps=24, eval_every=8, checkpoint_every=2)
    killed = tmp_path / "killed"
    code = ("import json, sys; from pipeline.train import run; "
            "run(ingest_dir=sys.argv[1], config=json.loads(sys.argv[2]), out=sys.argv[3], progress=False)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(toy_ingest_dir), json.dumps(cfg), str(killed)],
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            lines = (killed / "history.jsonl").read_text().splitlines() if (killed / "history.jsonl").exists() else []
            if len(lines) >= 6:  # a few steps past the first checkpoints
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the run finished before it could be killed"
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (killed / "stage.json").exists()
    resumed = run(ingest_dir=toy_ingest_dir, config=cfg, out=killed, resume=True, progress=False)
    straight = run(ingest_dir=toy_ingest_dir, config=cfg, out=tmp_path / "straight", progress=False)
    _assert_identical(_algorithm_weights(straight.out), _algorithm_weights(resumed.out), "state")
    assert _history(straight.out) == _history(resumed.out)
