"""An invalid command-line flag is a ConfigError (exit 2) naming the flag, the value and the valid values, checked
before any input is read (pipeline/commands/flags.py): never "config: <defaults> is invalid" nor the config file
the user did not change, and never a run that starts anyway (`train --seeds 0` used to train one run). The inputs
named here do not exist, so a flag that is not checked first fails these tests with another message."""

from __future__ import annotations

import pytest

from pipeline.cli import main

CASES = [
    (["audit", "RUN", "--ingest", "INGEST", "--out", "OUT", "--max-images", "-1"],
     "audit: --max-images must be greater than or equal to 1, got -1 (it sets the config key 'max_images')."),
    (["audit", "RUN", "--ingest", "INGEST", "--out", "OUT", "--methods", "salency"],
     "audit: --methods must be one of integrated_gradients, saliency, grad_cam, occlusion, got 'salency'"),
    (["audit", "RUN", "--ingest", "INGEST", "--out", "OUT", "--methods", ","],
     "audit: --methods must name at least 1 of integrated_gradients, saliency, grad_cam, occlusion, got []"),
    (["train", "INGEST", "--out", "OUT", "--steps", "0"],
     "train: --steps must be greater than or equal to 1, got 0 (it sets the config key 'steps')."),
    (["train", "INGEST", "--out", "OUT", "--device", "gpu"], "train: --device must be one of auto, cpu, cuda, got 'gpu'"),
    (["train", "INGEST", "--out", "OUT", "--seeds", "0"], "train: --seeds must be >= 1 (seeds per hparam draw), got 0."),
    (["train", "INGEST", "--out", "OUT", "--sweep", "-1"], "train: --sweep must be >= 0"),
    (["train", "INGEST", "--out", "OUT", "--seeds", "2", "--workers", "0"], "train: --workers must be >= 1"),
    (["train", "INGEST", "--out", "OUT", "--seeds", "2", "--engine", "ray", "--cpus-per-run", "-1"],
     "train: --cpus-per-run must be > 0 (CPUs Ray reserves per run), got -1.0."),
    (["evaluate", "RUN", "--ingest", "INGEST", "--out", "OUT", "--split", "tst"],
     "evaluate: --split must be one of train, val, ood_val, test, got 'tst'."),
    (["evaluate", "RUN", "--ingest", "INGEST", "--out", "OUT", "--n-bootstrap", "-1"],
     "evaluate: --n-bootstrap must be >= 0 (0: no AUROC interval), got -1."),
    (["evaluate", "RUN", "--ingest", "INGEST", "--out", "OUT", "--last-k", "0"], "evaluate: --last-k must be >= 1, got 0."),
    (["evaluate", "RUN", "--ingest", "INGEST", "--out", "OUT", "--batch-size", "0"],
     "evaluate: --batch-size must be >= 1, got 0."),
    (["synth", "--out", "OUT", "--n-per-site", "-1"],
     "synth: --n-per-site must be greater than or equal to 0, got -1 (it sets the config key 'sites[*].n')."),
    (["synth", "--out", "OUT", "--size", "3"], "synth: --size must be greater than or equal to 32, got 3"),
    (["synth", "--out", "OUT", "--counterfactual", "mirror"], "synth: --counterfactual must be one of position, got 'mirror'"),
    (["ingest", "SOURCE", "--out", "OUT", "--workers", "0"], "ingest: --workers must be >= 1, got 0."),
]


@pytest.mark.parametrize(("argv", "message"), CASES, ids=[" ".join(a[0:1] + a[-2:]) for a, _ in CASES])
def test_an_invalid_flag_exits_2_naming_the_flag(argv, message, tmp_path, capsys):
    names = {"RUN": tmp_path / "run", "INGEST": tmp_path / "ingest", "OUT": tmp_path / "out",
             "SOURCE": tmp_path / "source"}
    assert main([str(names.get(a, a)) for a in argv]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert "config: " not in err  # the flag is named, not a config file
    assert not (tmp_path / "out").exists()  # refused before anything was written
