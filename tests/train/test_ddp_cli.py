"""`cxr-fishr train --nproc 2` launches torchrun (gloo on CPU): rank 0 writes the run, equal to one process."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import yaml

from pipeline.cli import main
from pipeline.train import run


def _config(tiny_config) -> dict:
    # noise off: it is drawn once per minibatch shard (see test_ddp_exact.py)
    return tiny_config(algorithm="fishr", hparams={"lr": 1e-3, "batch_size": 4, "penalty_anneal_iters": 0,
                                                   "lambda": 100.0},
                       steps=2, eval_every=2, checkpoint_every=2, threads=1, augment={"noise_prob": 0.0})


def test_nproc_two_runs_torchrun_and_matches_one_process(toy_ingest_dir, tmp_path, tiny_config):
    config = tmp_path / "fishr.yaml"
    config.write_text(yaml.safe_dump(_config(tiny_config)))
    out = tmp_path / "ddp"
    done = subprocess.run([sys.executable, "-m", "pipeline.cli", "train", str(toy_ingest_dir), "--config",
                           str(config), "--out", str(out), "--nproc", "2"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("train: fishr 2 steps") == 1  # rank 0 reports, rank 1 is silent
    assert (out / "model.pt").is_file() and (out / "stage.json").is_file()
    run(ingest_dir=toy_ingest_dir, config=_config(tiny_config), out=tmp_path / "one", progress=False)

    def steps(path):
        lines = [json.loads(line) for line in (path / "history.jsonl").read_text().splitlines()]
        return [line for line in lines if "val_acc" not in line]

    single, ddp = steps(tmp_path / "one"), steps(out)
    assert len(single) == len(ddp) == 2
    for a, b in zip(single, ddp, strict=True):
        assert math.isclose(a["nll"], b["nll"], rel_tol=1e-5) and math.isclose(a["penalty"], b["penalty"],
                                                                                rel_tol=1e-5)


def test_nproc_refuses_a_sweep(toy_ingest_dir, tmp_path, tiny_config, capsys):
    config = tmp_path / "erm.yaml"
    config.write_text(yaml.safe_dump(tiny_config()))
    assert main(["train", str(toy_ingest_dir), "--config", str(config), "--out", str(tmp_path / "s"),
                 "--nproc", "2", "--sweep", "2"]) == 2
    assert "--nproc must be >= 1 and only for a single run" in capsys.readouterr().err


def test_nproc_refuses_a_batch_that_does_not_shard_before_launching(toy_ingest_dir, tmp_path, tiny_config, capsys):
    config = tmp_path / "irm.yaml"
    config.write_text(yaml.safe_dump(tiny_config(algorithm="irm", hparams={"batch_size": 6})))
    assert main(["train", str(toy_ingest_dir), "--config", str(config), "--out", str(tmp_path / "r"),
                 "--nproc", "2"]) == 2
    assert "multiple of the number of processes 2 times 2" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()
