"""A resumed run accounts for itself: stage.json's ``seconds`` counts the sessions before the resume (kept in the
checkpoint), the console says from which step it resumed, and Ctrl-C says where the run stopped and how to continue.
Real runs on the tests' tiny ingest (tests/helpers/tiny_cohort.py); Ctrl-C is a real SIGINT to a real process."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
import yaml

from pipeline.cli import main
from pipeline.train.checkpoint import checkpoint_path

REPO = Path(__file__).resolve().parents[2]


def _train(ingest, config, out, *extra):
    return main(["train", str(ingest), "--config", str(config), "--out", str(out), *extra])


def test_resuming_a_finished_run_keeps_its_training_seconds_and_says_the_step(toy_ingest_dir, tmp_path, tiny_config,
                                                                             capsys):
    config = tmp_path / "erm.yaml"
    config.write_text(yaml.safe_dump(tiny_config(steps=2, eval_every=2, checkpoint_every=2)))
    out = tmp_path / "run"
    assert _train(toy_ingest_dir, config, out) == 0
    first = json.loads((out / "stage.json").read_text())
    payload = torch.load(checkpoint_path(out), map_location="cpu", weights_only=False)
    assert payload["step"] == 2 and 0 < payload["seconds"] <= first["seconds"]
    # the earlier sessions' time, as the checkpoint records it: a known value, so the test reads no clock
    payload["seconds"] = 1000.0
    torch.save(payload, checkpoint_path(out))
    capsys.readouterr()

    assert _train(toy_ingest_dir, config, out, "--resume") == 0
    err = capsys.readouterr().err
    assert f"train: resuming {out} from step 2 of 2" in err and "already finished" in err
    again = json.loads((out / "stage.json").read_text())
    assert again["final_step"] == 2
    assert 1000.0 <= again["seconds"] < 1000.0 + 3600  # the earlier session's 1000 s plus this session's


def test_a_checkpoint_without_seconds_takes_them_from_the_finished_runs_stage_json(toy_ingest_dir, tmp_path,
                                                                                   tiny_config):
    config = tmp_path / "erm.yaml"
    config.write_text(yaml.safe_dump(tiny_config(steps=2, eval_every=2, checkpoint_every=2)))
    out = tmp_path / "run"
    assert _train(toy_ingest_dir, config, out) == 0
    payload = torch.load(checkpoint_path(out), map_location="cpu", weights_only=False)
    del payload["seconds"]  # as checkpoints written before the seconds were kept
    torch.save(payload, checkpoint_path(out))
    record = json.loads((out / "stage.json").read_text())
    (out / "stage.json").write_text(json.dumps({**record, "seconds": 500.0}))

    assert _train(toy_ingest_dir, config, out, "--resume") == 0
    assert 500.0 <= json.loads((out / "stage.json").read_text())["seconds"] < 500.0 + 3600


def test_resuming_an_interrupted_run_says_how_many_steps_are_left(toy_ingest_dir, tmp_path, tiny_config, capsys):
    config = tmp_path / "erm.yaml"
    config.write_text(yaml.safe_dump(tiny_config(steps=2, eval_every=2, checkpoint_every=2)))
    out = tmp_path / "run"
    assert _train(toy_ingest_dir, config, out) == 0
    capsys.readouterr()
    assert _train(toy_ingest_dir, config, out, "--resume", "--steps", "4") == 0
    assert f"train: resuming {out} from step 2 of 4 ({checkpoint_path(out)}); 2 steps to go." in capsys.readouterr().err


def test_ctrl_c_during_training_says_the_step_and_how_to_continue(toy_ingest_dir, tmp_path, tiny_config):
    config = tmp_path / "erm.yaml"
    config.write_text(yaml.safe_dump(tiny_config(steps=100000, eval_every=100000, checkpoint_every=100000)))
    out = tmp_path / "run"
    command = [sys.executable, "-m", "pipeline.cli", "train", str(toy_ingest_dir), "--config", str(config),
               "--out", str(out)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        history = out / "history.jsonl"
        deadline = time.monotonic() + 300  # a guard against a hang, not a measurement
        # a logged step: the loop is running (the step-0 checkpoint is written before it)
        while not (history.is_file() and history.read_text().strip()):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "train logged no step"
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, err
    assert "train: interrupted at step " in err and "the last checkpoint is step 0" in err, err
    assert "Rerun with --resume to continue" in err and str(checkpoint_path(out)) in err
    assert not (out / "stage.json").exists()  # an interrupted run never looks finished
