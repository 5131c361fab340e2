"""Trial 2, findings 7 and 8: a path the user named explicitly is what it claims or the report exits 2; the report
names the ingest (cohort) behind each section, warns at the top when sections are about different ingests, and
refuses ingests that disagree on the test site. Small real stage folders (manifest.parquet, cache.json, stage.json,
metrics.json, results.json)."""

import json

import pandas as pd
import pytest

from pipeline.artefacts.audit import AuditFile
from pipeline.artefacts.metrics import MetricsFile
from pipeline.cli import main
from pipeline.errors import DataError
from pipeline.report.loading import ReportInputs
from pipeline.report.sources import compare_ingests, section_ingests
from tests.helpers.audit_outputs import audit_json
from tests.helpers.stage_outputs import metrics_json
from tests.helpers.stage_record import stage_json


def _write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def _ingest(root, *, inputs_hash, test_site):
    rows = [{"site": s, "split": "train", "label": 1} for s in ("north", "east")]
    rows += [{"site": test_site, "split": "test", "label": 0}] if test_site else []
    root.mkdir(parents=True)
    extra = {"position": "erect", "view": "PA", "sex": "F", "age_years": 50.0, "age_group": "adult"}
    pd.DataFrame([{**r, **extra, "domain": r["site"]} for r in rows]).to_parquet(root / "manifest.parquet")
    _write(root / "cache" / "cache.json", {"n": len(rows), "inputs_hash": inputs_hash})
    return root


RESULTS = {"hospitals": ["north"], "algorithms": ["erm"], "rules": ["training_domain"], "sweeps": [],
           "oracle_label": "oracle", "cells": {"training_domain": {"erm": {"north": {
               "mean": 50.0, "sd": None, "n_seeds": 1, "draw": 0, "hparams": {}, "constant_seeds": 0,
               "majority_baseline": None}}}},
           "summary": {"training_domain": {"erm": {"average": 50.0, "worst": 50.0, "worst_hospital": "north"}}}}


def _sweep(root, ingest, *, results=True):
    _write(root / "sweep.json", [])
    _write(root / "stage.json", stage_json("train_sweep", inputs={"ingest_dir": {"path": str(ingest), "hash": "x"}}))
    if results:
        _write(root / "results.json", RESULTS)
    return root


def _evaluate(root, ingest):
    _write(root / "metrics.json", metrics_json({}, sites=["colb"], ingest_dir=str(ingest)))
    _write(root / "stage.json", stage_json("evaluate", inputs={"ingest": {"path": str(ingest / "manifest.parquet"),
                                                                           "hash": "y"}}))
    return root


@pytest.fixture
def cohort(tmp_path):
    tag = _ingest(tmp_path / "ing_tag", inputs_hash="hash-tag", test_site="colb")
    return tmp_path, tag, _evaluate(tmp_path / "eval", tag)


@pytest.mark.parametrize("kind", ["missing", "run folder", "sweep without results", "a file", "not results"])
def test_a_bad_results_path_exits_2_naming_it(cohort, capsys, kind):
    root, tag, evaluate = cohort
    target = root / "target"
    if kind == "run folder":
        (target / "model.pt").parent.mkdir(parents=True)
        (target / "model.pt").write_bytes(b"x")
    elif kind == "sweep without results":
        _sweep(target, tag, results=False)
    elif kind == "a file":
        target.write_text("x")
    elif kind == "not results":
        _write(target / "results.json", {"something": 1})
    code = main(["report", "--evaluate", str(evaluate), "--results", str(target), "--out", str(root / "rep")])
    err = capsys.readouterr().err
    assert code == 2 and "--results must" in err and str(target) in err
    assert not (root / "rep" / "index.html").exists()
    expected = {"missing": "no such folder", "run folder": "a training run folder (model.pt), not a sweep",
                "sweep without results": "run `cxr-fishr results", "a file": "a file, not a folder",
                "not results": "hospitals: Field required"}[kind]
    assert expected in err


@pytest.mark.parametrize("flag", ["--evaluate", "--audit", "--ingest"])
def test_a_missing_evaluate_audit_or_ingest_path_exits_2(cohort, capsys, flag):
    root, _, evaluate = cohort
    args = ["report", "--evaluate", str(evaluate), "--out", str(root / "rep")]
    args = (args + [flag, str(root / "nope")]) if flag != "--evaluate" else \
        ["report", "--evaluate", str(root / "nope"), "--out", str(root / "rep")]
    assert main(args) == 2
    assert f"{flag} must be" in capsys.readouterr().err


def _inputs(metrics_ingest, audit_ingest=None, cohort_ingest=None):
    """Each section's ingest as its artefact declares it (``ingest_dir``; no hash recorded)."""
    return ReportInputs(metrics=MetricsFile.from_dict(metrics_json({}, ingest_dir=str(metrics_ingest))),
                        audit=AuditFile.from_dict(audit_json({}, ingest_dir=str(audit_ingest))) if audit_ingest
                        else None,
                        ingest_dir=cohort_ingest)


def test_a_sweep_on_another_ingest_is_warned_naming_both(cohort):
    root, tag, _ = cohort
    loho = _ingest(root / "ing_loho", inputs_hash="hash-loho", test_site=None)
    found = section_ingests(_inputs(tag, tag, tag), _sweep(root / "sw", loho))
    assert [r.path for r in found["sweep results"]] == [loho] and found["evaluate"][0].test_sites == ("colb",)
    (warning,) = compare_ingests(found)
    assert f"evaluate, audit and the cohort section are about ingest {tag} (inputs hash hash-tag, test site colb)" \
        in warning
    assert f"the sweep results are about ingest {loho} (inputs hash hash-loho, no test site)" in warning


def test_a_copied_ingest_with_the_same_hash_is_the_same_cohort(cohort):
    root, tag, _ = cohort
    copy = _ingest(root / "copy", inputs_hash="hash-tag", test_site="colb")
    assert compare_ingests(section_ingests(_inputs(tag, copy), _sweep(root / "sw", copy))) == []


def test_sections_on_different_test_hospitals_are_refused(cohort, capsys):
    root, tag, evaluate = cohort
    other = _ingest(root / "ing_other", inputs_hash="hash-other", test_site="south")
    with pytest.raises(DataError, match="every section must be about the same test hospital"):
        compare_ingests(section_ingests(_inputs(tag, other), None))
    sweep = _sweep(root / "sw", other)
    assert main(["report", "--evaluate", str(evaluate), "--results", str(sweep), "--out", str(root / "rep")]) == 2
    err = capsys.readouterr().err
    assert "test site colb" in err and "test site south" in err and str(other) in err


def test_the_page_names_each_sections_ingest_and_warns_at_the_top(cohort, capsys):
    root, tag, evaluate = cohort
    loho = _ingest(root / "ing_loho", inputs_hash="hash-loho", test_site=None)
    sweep = _sweep(root / "sw", loho)
    assert main(["report", "--evaluate", str(evaluate), "--results", str(sweep), "--out", str(root / "rep")]) == 0
    assert "warning: Different cohorts" in capsys.readouterr().err
    page = (root / "rep" / "index.html").read_text()
    summary = page[page.index('id="summary"'):page.index('id="cohort"')]
    assert "Different cohorts: evaluate and the cohort section are about ingest" in summary
    results = page[page.index('id="results"'):]
    assert f"Ingest: {loho} (inputs hash hash-loho, no test site)" in results
    stage = json.loads((root / "rep" / "stage.json").read_text())
    assert stage["inputs"]["results"]["path"] == str(sweep) and stage["warnings"]


def test_an_unreachable_evaluate_ingest_keeps_its_hash_and_test_sites(cohort):
    root, tag, _ = cohort
    other = _ingest(root / "ing_other", inputs_hash="hash-other", test_site="south")
    inputs = ReportInputs(metrics=MetricsFile.from_dict(metrics_json(
        {}, ingest_dir="moved/away", ingest_hash="hash-moved", split="test", sites=["colb"])))
    found = section_ingests(inputs, _sweep(root / "sw", other))
    assert (found["evaluate"][0].inputs_hash, found["evaluate"][0].test_sites) == ("hash-moved", ("colb",))
    with pytest.raises(DataError, match="test site colb.*test site south"):
        compare_ingests(found)
