"""`cxr-fishr evaluate SWEEP_DIR` (a sweep's root: sweep.json, the sweep's selection.json and a copied model.pt) is
exit 2 saying it is a sweep folder and naming its run folders and `cxr-fishr results`, not a selection.json schema
error."""

import json
import shutil

import pytest

from pipeline.cli import main
from pipeline.errors import DataError
from pipeline.runs import collect_models
from tests.helpers.tiny_cohort import build_ingest, save_run


def _sweep(root):
    """A sweep folder as train --sweep writes it: runs/<name>/ run folders, sweep.json, the sweep's selection.json
    ({rule: choice}) and model.pt copied from the chosen run."""
    run = save_run(root / "runs" / "erm-0-0", selected_rules=("training_domain",))
    (root / "sweep.json").write_text(json.dumps([{"algorithm": "erm", "draw": 0, "trial_seed": 0, "holdout": None,
                                                  "dir": "runs/erm-0-0", "hparams": {}}]))
    (root / "selection.json").write_text(json.dumps({"training_domain": {"runs": ["runs/erm-0-0"], "draw": 0,
                                                                         "checkpoint_rule": "training_domain"}}))
    shutil.copyfile(run / "selected" / "training_domain.pt", root / "model.pt")
    return run


def test_evaluate_on_a_sweep_folder_names_its_runs_and_results(tmp_path, capsys):
    sweep = tmp_path / "sweeps" / "erm"
    run = _sweep(sweep)
    ingest = build_ingest(tmp_path / "ingest", n_per_site=4)
    assert main(["evaluate", str(sweep), "--ingest", str(ingest), "--out", str(tmp_path / "eval")]) == 2
    err = capsys.readouterr().err
    assert f"got {str(sweep)!r}: a sweep folder (sweep.json)" in err
    assert str(run) in err and f"cxr-fishr results {sweep}" in err
    assert "does not match" not in err


def test_a_folder_of_sweeps_is_named_so(tmp_path):
    _sweep(tmp_path / "sweeps" / "erm")
    with pytest.raises(DataError, match=r"a folder of sweeps \(\*/sweep.json\).*erm-0-0"):
        collect_models([tmp_path / "sweeps"], stage="audit")


def test_a_run_folder_of_the_sweep_is_still_a_model_dir(tmp_path):
    run = _sweep(tmp_path / "sweeps" / "erm")
    assert [e.name for e in collect_models([run])] == ["erm-0-0"]
