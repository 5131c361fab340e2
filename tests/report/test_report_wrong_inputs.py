"""An explicitly given report input that is not what its flag needs is exit 2 naming the flag, the folder, what it
holds and the fix: --evaluate/--audit swapped, --evaluate given an ingest, a folder without metrics.json/audit.json;
--results given a sweep without results.json. A flag not given stays a note."""

from __future__ import annotations

import json
import shutil

import pytest

from pipeline.cli import main
from pipeline.errors import DataError
from pipeline.report.loading import load_inputs
from tests.helpers.audit_outputs import audit_json
from tests.helpers.stage_outputs import metrics_json, model_entry
from tests.helpers.stage_record import stage_json


def _stage_dir(path, stage, filename, content):
    path.mkdir(parents=True)
    (path / filename).write_text(json.dumps(content))
    (path / "stage.json").write_text(json.dumps(stage_json(stage)))
    return path


@pytest.fixture
def outputs(tmp_path):
    evaluate = _stage_dir(tmp_path / "evaluate", "evaluate", "metrics.json", metrics_json({"m": model_entry("m")}))
    audit = _stage_dir(tmp_path / "audit", "audit", "audit.json", audit_json({}))
    return tmp_path, evaluate, audit


def test_swapped_evaluate_and_audit_exit_2_saying_so(outputs, capsys):
    root, evaluate, audit = outputs
    code = main(["report", "--evaluate", str(audit), "--audit", str(evaluate), "--out", str(root / "rep")])
    err = capsys.readouterr().err
    assert code == 2
    assert (f"--evaluate must be a folder holding metrics.json, got {str(audit)!r}: the output of `cxr-fishr audit` "
            "(its stage.json), not of evaluate. Were --evaluate and --audit swapped?") in err
    assert not (root / "rep" / "index.html").exists()


def test_an_ingest_given_as_evaluate_exits_2_naming_it(outputs, capsys):
    root, _, _ = outputs
    ingest = root / "ingest"
    ingest.mkdir()
    (ingest / "manifest.parquet").write_bytes(b"PAR1")  # no stage.json: the file tells what the folder holds
    code = main(["report", "--evaluate", str(ingest), "--out", str(root / "rep")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"got {str(ingest)!r}: the output of `cxr-fishr ingest` (the files in it), not of evaluate" in err
    assert "Pass the --out of `cxr-fishr evaluate` to --evaluate" in err


def test_a_folder_without_its_file_exits_2(outputs):
    root, evaluate, audit = outputs
    (root / "empty").mkdir()
    with pytest.raises(DataError, match=r"--audit must be a folder holding audit.json, got .*empty': no audit.json "
                                        r"and no stage.json \(an empty folder\)\. Run `cxr-fishr audit"):
        load_inputs(evaluate_dir=evaluate, audit_dir=root / "empty")
    (audit / "audit.json").unlink()  # stage.json says audit, its file is gone
    with pytest.raises(DataError, match=r"an unfinished `cxr-fishr audit` \(stage.json, no audit.json\)"):
        load_inputs(evaluate_dir=evaluate, audit_dir=audit)


def test_a_flag_not_given_is_still_a_note(outputs):
    _, evaluate, _ = outputs
    inputs = load_inputs(evaluate_dir=evaluate, audit_dir=None)
    assert inputs.metrics is not None and inputs.audit is None
    assert "No audit directory was given, so the report has no audit results." in inputs.missing


def test_results_on_a_sweep_without_results_json_says_run_results(outputs, capsys):
    root, evaluate, _ = outputs
    sweep = root / "sweeps" / "erm"
    sweep.mkdir(parents=True)
    (sweep / "sweep.json").write_text("[]")
    shutil.copyfile(evaluate / "metrics.json", sweep / "model.pt")  # a sweep folder holds its chosen model.pt
    code = main(["report", "--evaluate", str(evaluate), "--results", str(sweep), "--out", str(root / "rep")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"a sweep without results.json: run `cxr-fishr results {sweep}` first" in err
    assert "training run folder" not in err


@pytest.mark.parametrize("flag", ["--results", "--ingest"])
def test_results_or_ingest_given_another_stages_folder_names_what_it_holds(outputs, capsys, flag):
    root, evaluate, audit = outputs
    code = main(["report", "--evaluate", str(evaluate), flag, str(audit), "--out", str(root / "rep")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{flag} must be" in err and f"got {str(audit)!r}: the output of `cxr-fishr audit`" in err
