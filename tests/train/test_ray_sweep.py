"""A tiny sweep on a local Ray (2 CPUs): 2 algorithms x 2 hparam draws x 1 seed x leave-one-hospital-out, one run
that fails (reported, the others finish), a relaunch that runs only that one, then the result tables."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import ray

from pipeline.artefacts.history import read_history
from pipeline.cli import main
from pipeline.errors import ConfigError, DataError
from pipeline.evaluate.history import value_at_step
from pipeline.stage import is_fresh, read_stage
from pipeline.train import load_train_config
from pipeline.train.sweep import loho_hospitals, plan_jobs, run_sweep

HOSPITALS = ["east", "north", "west"]  # tests/helpers/tiny_cohort.py's TRAIN_SITES training hospitals


def _config(tiny_config, algorithm: str):
    hparams = {"lr": 3e-3, "batch_size": 8}
    if algorithm == "fishr":
        hparams.update({"penalty_anneal_iters": 0})
    model = {"backbone": "test_resnet", "norm_layer": "group"}
    return load_train_config(tiny_config(algorithm=algorithm, hparams=hparams, model=model, steps=12, eval_every=4,
                                         checkpoint_every=4, threads=1))


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_ray_sweep_leave_one_hospital_out_then_results(local_ray, toy_ingest_dir, tmp_path, tiny_config, capsys):
    root = tmp_path / "sweeps"
    fishr = _config(tiny_config, "fishr")
    # a corrupt checkpoint makes one fishr run crash (torch cannot unpickle it): reported, the other runs finish
    broken = plan_jobs(fishr, n_hparams=2, seeds=1, test_hospitals=HOSPITALS)[1]
    broken_dir = root / "fishr" / "runs" / broken.key
    (broken_dir / "checkpoints").mkdir(parents=True)
    (broken_dir / "checkpoints" / "last.pt").write_bytes(b"not a checkpoint")
    results = {name: run_sweep(ingest_dir=toy_ingest_dir, config=cfg, out=root / name, n_hparams=2, seeds=1,
                               leave_one_hospital_out=True, engine="ray")
               for name, cfg in (("erm", _config(tiny_config, "erm")), ("fishr", fishr))}
    assert results["erm"].ran == 6 and not results["erm"].failed
    assert results["fishr"].ran == 6 and list(results["fishr"].failed) == [str(broken_dir)]
    assert not is_fresh(broken_dir, read_stage(broken_dir).get("fingerprint"))
    assert sum(is_fresh(d, read_stage(d).get("fingerprint")) for d in (root / "fishr" / "runs").iterdir()) == 5

    (broken_dir / "checkpoints" / "last.pt").unlink()
    again = run_sweep(ingest_dir=toy_ingest_dir, config=fishr, out=root / "fishr", n_hparams=2, seeds=1,
                      leave_one_hospital_out=True, engine="ray")
    assert again.ran == 1 and again.skipped == 5 and not again.failed
    selection = json.loads((root / "fishr" / "selection.json").read_text())
    assert sorted(selection) == HOSPITALS and selection["east"]["oracle"]["label"].startswith("oracle")

    assert main(["results", str(root)]) == 0
    tables = json.loads((root / "results.json").read_text())
    assert tables["hospitals"] == HOSPITALS and tables["algorithms"] == ["erm", "fishr"]
    assert tables["rules"] == ["training_domain", "ood_validation", "oracle"]
    # sweep.json records run folders relative to its own folder
    runs = [{**r, "dir": str(root / name / r["dir"]),
             "selection": json.loads((root / name / r["dir"] / "selection.json").read_text())}
            for name in ("erm", "fishr") for r in json.loads((root / name / "sweep.json").read_text())]
    assert all(entry["dir"] == f"runs/{Path(entry['dir']).name}" for name in ("erm", "fishr")
               for entry in json.loads((root / name / "sweep.json").read_text()))
    measured = 0
    for rule in tables["rules"]:
        source = "leave_one_domain_out" if rule == "oracle" else rule
        for algorithm in ("erm", "fishr"):
            means = []
            for hospital in HOSPITALS:
                cell = tables["cells"][rule][algorithm][hospital]
                group = [r for r in runs if r["algorithm"] == algorithm and r["test_hospital"] == hospital
                         and r["selection"][source]["score"] is not None]
                if not group:  # every draw a constant predictor throughout: null with a reason, never 0
                    assert cell["mean"] is None and "constant" in cell["not_measured"]
                    means.append(None)
                    continue
                # recomputed here: the draw with the best selection score (the first on a tie), its test accuracy
                best = max(group, key=lambda r: (r["selection"][source]["score"], -r["draw"]))
                expected = 100 * value_at_step(read_history(best["dir"]), best["selection"][source]["step"], "holdout_acc")
                assert cell["draw"] == best["draw"] and cell["hparams"] == best["hparams"]
                assert cell["mean"] == pytest.approx(expected) and cell["sd"] is None and cell["n_seeds"] == 1
                means.append(cell["mean"])
                measured += 1
            summary = tables["summary"][rule][algorithm]
            if None in means:
                assert summary["average"] is None and summary["not_measured"]
            else:
                assert summary["average"] == pytest.approx(sum(means) / 3) and summary["worst"] == min(means)
    assert measured >= 12  # most cells hold a number (a run that learnt something)
    markdown = (root / "results.md").read_text()
    assert "| Algorithm | east | north | west | Average | Worst |" in markdown and " (n=1" in markdown
    assert " ± 0.0" not in markdown  # one seed: no spread
    assert "lambda=" in markdown  # fishr's chosen hparams are shown
    assert "\\begin{tabular}{lccccc}" in (root / "results.tex").read_text()
    with open(root / "results_table.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 * 2 * (3 + 2)
    assert "NaN" not in (root / "results.json").read_text()
    assert "results: 12 runs of 2 algorithms over 3 test hospitals" in capsys.readouterr().out


def test_leave_one_hospital_out_needs_three_hospitals_and_excludes_leave_one_out(one_domain_ingest_dir,
                                                                                 toy_ingest_dir, tiny_config):
    cfg = _config(tiny_config, "erm")
    with pytest.raises(DataError, match="needs >= 3 training hospitals"):
        loho_hospitals(one_domain_ingest_dir, cfg, min_labelled=1)
    hospitals, warnings = loho_hospitals(toy_ingest_dir, cfg, min_labelled=25)
    assert hospitals == HOSPITALS and warnings == []
    with pytest.raises(DataError, match="with >= 10000 labelled images"):
        loho_hospitals(toy_ingest_dir, cfg, min_labelled=10_000)
    with pytest.raises(ConfigError, match="--engine must be 'local' or 'ray'"):
        run_sweep(ingest_dir=toy_ingest_dir, config=cfg, out=toy_ingest_dir.parent / "never", engine="dask")
    with pytest.raises(ConfigError, match="either leave-one-out"):
        plan_jobs(cfg, n_hparams=1, seeds=1, holdout_domains=["east"], test_hospitals=["west"])


def test_results_without_a_sweep_is_a_clear_error(tmp_path):
    assert main(["results", str(tmp_path)]) == 2
