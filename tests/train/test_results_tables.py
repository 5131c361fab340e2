"""`cxr-fishr results` on hand-built sweep directories: which draw each rule picks, mean +- sample sd over
seeds, average and worst hospital, escaping, and nulls with reasons (never 0)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from pipeline.artefacts.results import ResultsFile
from pipeline.cli import main
from pipeline.results import build_tables, collect_runs


def _run(root: Path, name: str, *, val: float | None, test: float | None, key: str = "test_acc",
         lodo: float | None = None) -> str:
    """A finished run: its selection.json (training_domain at step 4 scored ``val``; a LODO hold-out run's
    leave_one_domain_out scored ``lodo``) and history.jsonl."""
    run_dir = root / "runs" / name
    run_dir.mkdir(parents=True)
    step = None if val is None else 4
    selection = {"training_domain": {"step": step, "score": val},
                 "oracle" if key == "test_acc" else "leave_one_domain_out": {"step": step, "score": test}}
    if lodo is not None:
        selection["leave_one_domain_out"] = {"step": 4, "score": lodo}
    (run_dir / "selection.json").write_text(json.dumps(selection))
    lines = [{"step": 4, "loss": 0.5}, {"step": 4, "val_acc": val, key: test}]
    (run_dir / "history.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return str(run_dir)


def _sweep(root: Path, entries: list[dict]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "sweep.json").write_text(json.dumps(entries))


def _entry(root: Path, algorithm: str, draw: int, seed: int, *, val, test, hospital=None, holdout=None,
           lodo=None) -> dict:
    key = "holdout_acc" if hospital else "test_acc"
    name = f"{algorithm}-{draw}-{seed}-{hospital}-{holdout}"
    return {"algorithm": algorithm, "draw": draw, "trial_seed": seed, "holdout": holdout or hospital,
            "test_hospital": hospital, "dir": _run(root, name, val=val, test=test, key=key, lodo=lodo),
            "hparams": {"lr": 10.0 ** -draw}}


def test_rule_picks_best_mean_draw_and_reports_sample_sd_over_seeds(tmp_path):
    root = tmp_path / "sweeps"
    erm = root / "erm"
    _sweep(erm, [
        _entry(erm, "erm", 0, 0, val=0.9, test=0.5), _entry(erm, "erm", 0, 1, val=0.5, test=0.5),  # mean val 0.7
        _entry(erm, "erm", 1, 0, val=0.8, test=0.6), _entry(erm, "erm", 1, 1, val=0.8, test=0.8),  # mean val 0.8
        # LODO hold-out runs rank draws under that rule only (draw 0 wins there); never test results themselves
        _entry(erm, "erm", 0, 0, val=0.99, test=0.99, holdout="east", lodo=0.9),
        _entry(erm, "erm", 1, 0, val=0.99, test=0.99, holdout="east", lodo=0.4),
    ])
    tables = build_tables(*collect_runs(root))
    assert tables.hospitals == ["test"]
    assert tables.rules == ["training_domain", "leave_one_domain_out", "oracle"]
    lodo = tables.cell("leave_one_domain_out", "erm", "test")
    assert lodo.draw == 0 and lodo.mean == 50.0 and lodo.n_seeds == 2  # draw 0's full runs
    cell = tables.cell("training_domain", "erm", "test")
    assert cell.draw == 1 and cell.hparams == {"lr": 0.1} and cell.n_seeds == 2
    # seeds 60% and 80%: sample sd (n - 1, pipeline/artefacts/seeds.py) 14.14, not the population sd 10.0
    assert abs(cell.mean - 70.0) < 1e-9 and abs(cell.sd - 14.142135623730951) < 1e-9
    oracle = tables.cell("oracle", "erm", "test")
    assert oracle.draw == 1 and abs(oracle.mean - 70.0) < 1e-9


def test_leave_one_hospital_out_columns_average_worst_and_not_measured(tmp_path):
    root = tmp_path / "sweeps"
    for algorithm, values in (("erm", {"a_b": (0.7, 0.6), "c&d": (0.8, 0.9)}),
                              ("fishr", {"a_b": (0.7, 0.75), "c&d": (None, None)})):
        sweep = root / algorithm
        _sweep(sweep, [_entry(sweep, algorithm, 0, 0, val=v, test=t, hospital=h) for h, (v, t) in values.items()])
    assert main(["results", str(root), "--out", str(tmp_path / "tables")]) == 0
    tables = json.loads((tmp_path / "tables" / "results.json").read_text())
    assert tables["hospitals"] == ["a_b", "c&d"] and tables["rules"] == ["training_domain", "oracle"]
    assert tables["summary"]["training_domain"]["erm"] == {"average": 75.0, "worst": 60.0, "worst_hospital": "a_b",
                                                           "constant_hospitals": []}
    fishr = tables["cells"]["training_domain"]["fishr"]["c&d"]
    assert fishr["mean"] is None and "constant" in fishr["not_measured"]
    assert tables["summary"]["training_domain"]["fishr"]["average"] is None
    markdown = (tmp_path / "tables" / "results.md").read_text()
    assert "| erm | 60.0 (n=1) | 90.0 (n=1) | 75.0 | 60.0 (a_b) |" in markdown
    assert "| fishr | 75.0 (n=1) | not measured | not measured | not measured |" in markdown
    assert "oracle: test-domain accuracy, an upper bound only" in markdown
    latex = (tmp_path / "tables" / "results.tex").read_text()
    assert "Algorithm & a\\_b & c\\&d & Avg & Worst \\\\" in latex
    with open(tmp_path / "tables" / "results_table.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    worst = [r for r in rows if r["selection_rule"] == "training_domain" and r["algorithm"] == "erm"
             and r["test_hospital"] == "worst"]
    assert worst[0]["accuracy_mean"] == "60.0" and worst[0]["worst_hospital"] == "a_b"
    assert "NaN" not in (tmp_path / "tables" / "results.json").read_text()


def test_results_refuses_a_sweep_json_without_algorithms(tmp_path, capsys):
    _sweep(tmp_path, [{"draw": 0, "trial_seed": 0, "holdout": None, "dir": str(tmp_path), "hparams": {}}])
    assert main(["results", str(tmp_path)]) == 2
    assert "must name its algorithm" in capsys.readouterr().err


def test_report_shows_the_result_tables(tmp_path):
    from pipeline.report import run as report

    root = tmp_path / "sweeps"
    _sweep(root, [_entry(root, "fishr", 0, 0, val=0.7, test=0.625, hospital=h) for h in ("north", "west")])
    assert main(["results", str(root)]) == 0
    html = report(evaluate_dir=None, audit_dir=None, out=tmp_path / "report", results_dir=root).index.read_text()
    assert '<section id="results">' in html and "62.5% (n=1)" in html and "62.5% (north)" in html
    assert "Hparams chosen under training_domain" in html
    without = report(evaluate_dir=None, audit_dir=None, out=tmp_path / "plain").index.read_text()
    assert '<section id="results">' not in without


def test_results_json_round_trips_exactly_through_its_model(tmp_path):
    """results.json as `cxr-fishr results` writes it (a measured and a not-measured hospital, two algorithms) is
    reproduced key for key, in order, by ResultsFile; a wrong schema_version or a missing cell key is a DataError."""
    import pytest

    from pipeline.errors import DataError

    root = tmp_path / "sweeps"
    for algorithm, values in (("erm", {"a_b": (0.7, 0.6), "c&d": (0.8, 0.9)}),
                              ("fishr", {"a_b": (0.7, 0.75), "c&d": (None, None)})):
        sweep = root / algorithm
        _sweep(sweep, [_entry(sweep, algorithm, 0, s, val=v, test=t, hospital=h) for h, (v, t) in values.items()
                       for s in (0, 1)])
    assert main(["results", str(root), "--out", str(tmp_path / "tables")]) == 0
    path = tmp_path / "tables" / "results.json"
    text = path.read_text(encoding="utf-8")
    loaded = ResultsFile.load(path)
    assert json.dumps(loaded.to_json_dict(), indent=2) + "\n" == text
    assert loaded.schema_version == 1 and loaded.cell("training_domain", "erm", "a_b").text() == "60.0 ± 0.0 (n=2)"
    assert loaded.cell("training_domain", "fishr", "c&d").not_measured.startswith("no draw had a non-constant")
    assert loaded.summary["training_domain"]["erm"].worst_hospital == "a_b"
    data = json.loads(text)
    with pytest.raises(DataError, match="schema_version 2"):
        ResultsFile.from_dict({**data, "schema_version": 2}, where=path)
    del data["cells"]["training_domain"]["erm"]["a_b"]["n_seeds"]
    with pytest.raises(DataError, match="n_seeds"):
        ResultsFile.from_dict(data, where=path)
