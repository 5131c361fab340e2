import json
from html.parser import HTMLParser

import pytest

from pipeline.errors import DataError
from pipeline.report import run
from pipeline.report.loading import load_inputs
from tests.helpers.stage_outputs import group_scores, metrics_json, model_entry
from tests.helpers.stage_record import stage_json


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.srcs, self.scripts, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.srcs.append(attrs.get("src"))
        if tag == "script":
            self.scripts.append(attrs)

    def handle_data(self, data):
        self.text.append(data)


def _parse(path):
    parser = _Collect()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def test_run_without_stage_json_or_ingest_renders_page_that_names_what_is_missing(tmp_path):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps(metrics_json({}, ingest_dir=str(tmp_path / "gone"))))
    result = run(evaluate_dir=tmp_path / "eval", audit_dir=None, out=tmp_path / "report")
    page = _parse(result.index)
    text = " ".join(page.text)
    assert "stage.json does not exist: provenance of the evaluate stage unknown" in text
    assert "No audit directory was given" in text
    assert "ingest directory was not found" in text
    assert page.srcs == []
    assert (tmp_path / "report" / "stage.json").is_file()


def test_run_given_empty_directories_raises_data_error(tmp_path):
    # an explicitly given folder without its stage's file is exit 2 (tests/report/test_report_wrong_inputs.py)
    (tmp_path / "eval").mkdir()
    with pytest.raises(DataError, match="--evaluate must be a folder holding metrics.json"):
        run(evaluate_dir=tmp_path / "eval", audit_dir=None, out=tmp_path / "report")


def test_run_missing_evaluate_directory_raises_data_error(tmp_path):
    with pytest.raises(DataError, match="--evaluate must be an existing directory"):
        run(evaluate_dir=tmp_path / "nope", audit_dir=None, out=tmp_path / "report")


def test_run_hostile_model_name_is_escaped_and_page_needs_no_network(tmp_path):
    hostile = "<script>alert(1)</script>"
    metrics = metrics_json({hostile: model_entry(hostile, per_site={"harbour": group_scores(n=4, accuracy=0.5)})})
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps(metrics))
    result = run(evaluate_dir=tmp_path / "eval", audit_dir=None, out=tmp_path / "report", title="A & B")
    html = result.index.read_text()
    assert hostile not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "A &amp; B" in html
    page = _parse(result.index)
    assert all(not s.get("src") for s in page.scripts)  # only the inline sorting script
    assert "http://" not in html and "https://" not in html
    for src in page.srcs:
        assert (result.out / src).is_file()


def test_the_ingest_and_runs_are_found_from_what_metrics_json_declares(tmp_path):
    import pandas as pd

    ingest = tmp_path / "somewhere" / "ingest"  # no stage.json records it: only metrics.json's ingest_dir names it
    ingest.mkdir(parents=True)
    pd.DataFrame({"site": ["harbour"] * 3, "split": ["test"] * 3, "position": ["erect"] * 3, "label": [0, 1, 1],
                  "domain": ["harbour"] * 3}).to_parquet(
        ingest / "manifest.parquet")
    run_dir = tmp_path / "elsewhere" / "erm-s0"
    run_dir.mkdir(parents=True)
    (run_dir / "stage.json").write_text(json.dumps(stage_json("train", seed=7)))
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps(metrics_json(
        {"erm-s0": model_entry("erm-s0", model_dir=str(run_dir))}, ingest_dir=str(ingest))))
    inputs = load_inputs(evaluate_dir=tmp_path / "eval", audit_dir=None)
    assert inputs.ingest_dir == ingest and len(inputs.cohort) == 3
    assert inputs.run_dirs == {"erm-s0": run_dir} and inputs.stages["train: erm-s0"].seed == 7
    assert f"{ingest / 'summary.json'} does not exist: cohort counts unavailable." in inputs.missing
    result = run(evaluate_dir=tmp_path / "eval", audit_dir=None, out=tmp_path / "report")
    assert "3 images" in result.index.read_text()


def test_a_metrics_json_of_an_older_schema_exits_2_naming_the_file_and_the_fix(tmp_path, capsys):
    from pipeline.cli import main

    (tmp_path / "eval").mkdir()
    old = metrics_json({})
    del old["ingest_dir"]  # a file from before the typed artefacts
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps(old))
    assert main(["report", "--evaluate", str(tmp_path / "eval"), "--out", str(tmp_path / "report")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "eval" / "metrics.json") in err and "ingest_dir: Field required" in err
    assert "Re-run `cxr-fishr evaluate`" in err and not (tmp_path / "report" / "index.html").exists()


def test_the_synthetic_cohort_is_the_folder_the_ingest_summary_declares_as_its_source(tmp_path):
    import pandas as pd

    from tests.helpers.ingest_outputs import ingest_summary

    synth = tmp_path / "cohort"
    (synth / "dicom").mkdir(parents=True)
    (synth / "stage.json").write_text(json.dumps(stage_json("synth", seed=3)))
    ingest = tmp_path / "ingest"
    ingest.mkdir()
    pd.DataFrame({"site": ["harbour"], "split": ["test"], "label": [1]}).to_parquet(ingest / "manifest.parquet")
    (ingest / "stage.json").write_text(json.dumps(stage_json("ingest")))  # records no input path
    (ingest / "summary.json").write_text(json.dumps(ingest_summary(n_images=1, source=str(synth / "dicom"))))
    inputs = load_inputs(evaluate_dir=None, audit_dir=None, ingest_dir=ingest)
    assert inputs.synth_dir == synth and inputs.stages["synth"].seed == 3
    assert inputs.ingest_summary.n_images == 1
    (ingest / "summary.json").write_text(json.dumps(ingest_summary(source=str(tmp_path / "elsewhere"))))
    assert load_inputs(evaluate_dir=None, audit_dir=None, ingest_dir=ingest).synth_dir is None
