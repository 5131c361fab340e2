"""A model trained on the manifest's ``domain`` column records what that column meant (the ingest's domain columns),
and evaluate/audit refuse an ingest where it means something else (exit 2 naming both); training domains that no
row of the ingest has are a counted warning naming them."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from pipeline.cli import main
from pipeline.errors import DataError
from pipeline.manifest import domain_values, read_manifest, write_manifest
from pipeline.train import run
from tests.helpers.ingest_outputs import ingest_summary
from tests.helpers.tiny_cohort import TRAIN_SITES, build_ingest

CONFIG = {"algorithm": "erm", "hparams": {"lr": 1e-3, "batch_size": 4},
          "model": {"backbone": "resnet10t", "norm_layer": "group"}, "steps": 2, "eval_every": 2,
          "checkpoint_every": 2, "eval_batch_size": 64, "device": "cpu", "seed": 0}


def _with_domains(ingest, columns: list[str]):
    """Give the ingest the meaning ``columns`` for its domain column (summary.json and the manifest's values)."""
    (ingest / "summary.json").write_text(json.dumps(ingest_summary(domain_columns=columns)))
    frame = read_manifest(ingest)
    frame["domain"] = domain_values(frame, tuple(c.lower() for c in columns)).to_numpy()
    write_manifest(frame, ingest)
    return ingest


@pytest.fixture(scope="module")
def site_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("meaning")
    ingest = _with_domains(build_ingest(root / "ing", sites=TRAIN_SITES, n_per_site=12, size=32, seed=0), ["Site"])
    model = run(ingest_dir=ingest, config=CONFIG, out=root / "run", progress=False).out
    return ingest, model


def test_trained_on_records_the_ingest_domain_columns(site_model):
    _, model = site_model
    trained_on = torch.load(model / "model.pt", weights_only=False)["meta"]["trained_on"]
    assert trained_on["ingest_domain_columns"] == ["Site"] and trained_on["domain_columns"] == ["domain"]


def test_another_meaning_of_domain_is_refused_naming_both(site_model, tmp_path, capsys):
    ingest, model = site_model
    other = _with_domains(shutil.copytree(ingest, tmp_path / "site_sex"), ["site", "SEX"])
    from pipeline.evaluate import run as evaluate

    with pytest.raises(DataError, match=r"domain.*\['site', 'SEX'\].*\['Site'\]"):
        evaluate(model_dirs=[model], ingest_dir=other, out=tmp_path / "ev", n_bootstrap=5)
    code = main(["audit", str(model), "--ingest", str(other), "--out", str(tmp_path / "au")])
    err = capsys.readouterr().err
    assert code == 2 and "['site', 'SEX']" in err and "['Site']" in err
    # the same meaning spelled in another case is the same meaning
    same = _with_domains(shutil.copytree(ingest, tmp_path / "site_lower"), ["site"])
    assert evaluate(model_dirs=[model], ingest_dir=same, out=tmp_path / "ev2", n_bootstrap=5).metrics


def test_training_domains_absent_from_the_ingest_are_a_counted_warning(site_model, tmp_path):
    ingest, model = site_model
    moved = shutil.copytree(ingest, tmp_path / "renamed")
    (moved / "summary.json").unlink()  # an ingest without summary.json: only the domains can tell
    frame = read_manifest(moved)
    frame["domain"] = frame["domain"].astype(str) + "|x"
    write_manifest(frame, moved)
    from pipeline.evaluate import run as evaluate

    metrics = evaluate(model_dirs=[model], ingest_dir=moved, out=tmp_path / "ev", n_bootstrap=5).metrics
    absent = [w for w in metrics["warnings"] if "trained on domains" in w]
    assert len(absent) == 1 and "'east'" in absent[0] and "'north'" in absent[0]


def test_an_older_model_file_is_checked_through_its_training_ingest(site_model, tmp_path):
    """A model file without ingest_domain_columns: the training ingest it names (trained_on.ingest_dir), where still
    present, tells what 'domain' meant."""
    ingest, model = site_model
    payload = torch.load(model / "model.pt", weights_only=False)
    payload["meta"]["trained_on"].pop("ingest_domain_columns")
    payload["meta"]["trained_on"]["ingest_dir"] = str(ingest)
    torch.save(payload, tmp_path / "older.pt")
    other = _with_domains(shutil.copytree(ingest, tmp_path / "site_sex"), ["site", "sex"])
    from pipeline.compat import check_models_compat

    with pytest.raises(DataError, match=r"\['site', 'sex'\].*\['Site'\]"):
        check_models_compat(checkpoints=[tmp_path / "older.pt"], ingest_dir=other, stage="audit")
