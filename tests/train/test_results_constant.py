"""`cxr-fishr results`: a cell whose selected checkpoint predicts one class at the test hospital is flagged
constant with the hospital's always-majority accuracy beside it (json, md, tex, csv, report), the oracle agrees
on which checkpoints are constant, and a single seed reads "n=1", never "± 0.0"."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from pipeline.cli import main
from tests.helpers.stage_record import stage_json


def _loho_run(sweep: Path, name: str, *, hospital: str, seed: int, holdout_acc: float, constant: bool) -> dict:
    """A finished leave-one-hospital-out run: training_domain picked step 4 (val not constant); its holdout
    (test hospital) predictions are ``constant`` at every step, so its own LODO (oracle) rule picked nothing."""
    run_dir = sweep / "runs" / name
    run_dir.mkdir(parents=True)
    lodo = {"step": None, "score": None} if constant else {"step": 4, "score": holdout_acc}
    (run_dir / "selection.json").write_text(json.dumps({"training_domain": {"step": 4, "score": 0.6},
                                                        "leave_one_domain_out": lodo}))
    row = {"step": 4, "val_acc": 0.6, "holdout_acc": holdout_acc,
           "predicts_constant": {"val": False, "holdout": constant}}
    (run_dir / "history.jsonl").write_text(json.dumps({"step": 4, "loss": 0.3}) + "\n" + json.dumps(row) + "\n")
    (run_dir / "stage.json").write_text(json.dumps(stage_json("train", config={"model": {"num_classes": 2}})))
    return {"algorithm": "erm", "draw": 0, "trial_seed": seed, "holdout": hospital, "test_hospital": hospital,
            "dir": f"runs/{name}", "hparams": {"lr": 0.001}}


def test_constant_cell_is_flagged_with_majority_baseline_and_one_seed_reads_n1(tmp_path):
    sweep = tmp_path / "sweep"
    # North: 12 of 13 negative, the model predicts negative everywhere -> 92.3% is the majority baseline.
    # West: the model predicts the minority class everywhere -> 25%, the majority would score 75%.
    entries = [_loho_run(sweep, "n0", hospital="North", seed=0, holdout_acc=12 / 13, constant=True),
               _loho_run(sweep, "w0", hospital="West", seed=0, holdout_acc=0.25, constant=True),
               _loho_run(sweep, "e0", hospital="East", seed=0, holdout_acc=0.8, constant=False),
               _loho_run(sweep, "e1", hospital="East", seed=1, holdout_acc=0.6, constant=False)]
    (sweep / "sweep.json").write_text(json.dumps(entries))
    assert main(["results", str(sweep)]) == 0
    data = json.loads((sweep / "results.json").read_text())
    north = data["cells"]["training_domain"]["erm"]["North"]
    assert north["constant_seeds"] == 1 and abs(north["majority_baseline"] - 1200 / 13) < 1e-9
    assert north["sd"] is None and north["n_seeds"] == 1 and "1 seed" in north["sd_not_measured"]
    west = data["cells"]["training_domain"]["erm"]["West"]
    assert west["constant_seeds"] == 1 and abs(west["majority_baseline"] - 75.0) < 1e-9
    east = data["cells"]["training_domain"]["erm"]["East"]
    assert east["constant_seeds"] == 0 and east["majority_baseline"] is None and east["n_seeds"] == 2
    assert data["summary"]["training_domain"]["erm"]["constant_hospitals"] == ["North", "West"]
    # the oracle skips the same checkpoints (one definition): nothing measured at North, said why
    oracle = data["cells"]["oracle"]["erm"]["North"]
    assert oracle["mean"] is None and "predicted one class at the test hospital" in oracle["not_measured"]
    markdown = (sweep / "results.md").read_text()
    assert "| erm | 70.0 ± 14.1 (n=2) | 92.3 (n=1, constant 1/1; majority 92.3) | " \
           "25.0 (n=1, constant 1/1; majority 75.0) |" in markdown
    assert "± 0.0" not in markdown and "erm at North; erm at West" in markdown
    assert "92.3 (n=1, constant 1/1; majority 92.3)" in (sweep / "results.tex").read_text()
    with open(sweep / "results_table.csv", newline="") as handle:
        rows = {r["test_hospital"]: r for r in csv.DictReader(handle) if r["selection_rule"] == "training_domain"}
    assert rows["North"]["constant_seeds"] == "1" and rows["North"]["accuracy_sd"] == ""
    assert abs(float(rows["West"]["majority_baseline"]) - 75.0) < 1e-9

    from pipeline.report import run as report

    html = report(evaluate_dir=None, audit_dir=None, out=tmp_path / "report", results_dir=sweep).index.read_text()
    assert "92.3% (n=1, constant 1/1; majority 92.3%)" in html and "± 0.0" not in html


def test_plain_sweep_flags_a_checkpoint_constant_on_the_test_split(tmp_path):
    sweep = tmp_path / "plain"
    entries = []
    for seed, (acc, constant) in enumerate(((0.3, True), (0.6, False))):
        run_dir = sweep / "runs" / f"r{seed}"
        run_dir.mkdir(parents=True)
        (run_dir / "selection.json").write_text(json.dumps({"training_domain": {"step": 2, "score": 0.7},
                                                            "oracle": {"step": 2, "score": acc}}))
        row = {"step": 2, "val_acc": 0.7, "test_acc": acc, "predicts_constant": {"val": False, "test": constant}}
        (run_dir / "history.jsonl").write_text(json.dumps(row) + "\n")
        (run_dir / "stage.json").write_text(json.dumps(stage_json("train", config={"model": {"num_classes": 2}})))
        entries.append({"algorithm": "fishr", "draw": 0, "trial_seed": seed, "holdout": None, "test_hospital": None,
                        "dir": f"runs/r{seed}", "hparams": {"lr": 0.01}})
    (sweep / "sweep.json").write_text(json.dumps(entries))
    assert main(["results", str(sweep)]) == 0
    cell = json.loads((sweep / "results.json").read_text())["cells"]["training_domain"]["fishr"]["test"]
    assert cell["constant_seeds"] == 1 and cell["n_seeds"] == 2 and abs(cell["majority_baseline"] - 70.0) < 1e-9
    assert "45.0 ± 21.2 (n=2, constant 1/2; majority 70.0)" in (sweep / "results.md").read_text()
