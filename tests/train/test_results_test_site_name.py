"""A sweep without leave-one-hospital-out names its test column by the test site(s) of the runs' ingest, in
results.json, results.md, results.tex, results_table.csv and the report alike; plain "test" with a note only when
that ingest cannot be read."""

from __future__ import annotations

import csv

from pipeline.artefacts.results import ResultsFile
from pipeline.report.results import build_results
from pipeline.results import build_tables, collect_runs
from pipeline.results.tables import write_tables
from pipeline.train import load_train_config
from pipeline.train.sweep import run_sweep
from tests.train.test_results_tables import _entry, _sweep


def test_plain_sweep_names_the_test_column_by_its_ingest_test_site(toy_ingest_dir, tmp_path, tiny_config):
    cfg = load_train_config(tiny_config(steps=4, eval_every=2, checkpoint_every=2))
    run_sweep(ingest_dir=toy_ingest_dir, config=cfg, out=tmp_path / "sweep", n_hparams=1, seeds=1)
    write_tables(build_tables(*collect_runs(tmp_path / "sweep")), tmp_path / "sweep")

    results = ResultsFile.load(tmp_path / "sweep")
    assert results.hospitals == ["test"]  # the cells stay keyed by the split
    assert results.label("test") == "harbour (test)"  # the toy ingest's one test site
    assert not results.notes
    md = (tmp_path / "sweep" / "results.md").read_text()
    assert "| Algorithm | harbour (test) | Average | Worst |" in md and "| erm | harbour (test) |" in md
    assert "harbour (test)" in (tmp_path / "sweep" / "results.tex").read_text()
    with open(tmp_path / "sweep" / "results_table.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {r["test_hospital"] for r in rows} == {"harbour (test)", "average", "worst"}
    assert {r["worst_hospital"] for r in rows if r["test_hospital"] == "worst"} <= {"harbour (test)", ""}
    scores, chosen = build_results(tmp_path / "sweep")["tables"][0]
    assert scores.columns[1] == "harbour (test)" and chosen.rows[0][1].text == "harbour (test)"


def test_a_sweep_whose_ingest_cannot_be_read_keeps_test_with_a_note(tmp_path):
    sweep = tmp_path / "sweeps" / "erm"
    _sweep(sweep, [_entry(sweep, "erm", 0, 0, val=0.9, test=0.5)])  # runs without a stage.json naming their ingest
    tables = build_tables(*collect_runs(sweep))
    assert tables.label("test") == "test"
    assert any("test column is named 'test'" in note and "could not be read" in note for note in tables.notes)
    write_tables(tables, sweep)
    assert "Note: results: the test column is named 'test'" in (sweep / "results.md").read_text()
    assert build_results(sweep)["notes"] == tables.notes
