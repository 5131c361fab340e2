"""New-user trial 4, F-A: an ingest whose `test` (or `ood_val`) split holds a hospital the model trained on was
scored and reported as "accuracy at the test hospital". evaluate and audit now refuse (exit 2) naming the model, the
sites and the fix; a leave-one-domain-out model scored on its held-out domain still runs."""

import shutil

import pandas as pd
import pytest
import torch

from pipeline.cli import main
from pipeline.compat import InputProfile, check_new_sites
from pipeline.errors import DataError
from pipeline.evaluate import run
from pipeline.manifest import read_manifest, write_manifest
from pipeline.models import ModelConfig, build_network, save_model


def _reingest(src, dst, *, test_sites):
    """The same images re-ingested with ``test_sites``: their rows move to the test split."""
    shutil.copytree(src, dst)
    frame = read_manifest(dst)
    frame.loc[frame["site"].isin(test_sites), "split"] = "test"
    write_manifest(frame, dst)
    return dst


def _model(run_dir, *, domains, holdout=None):
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="resnet10t")
    meta = {"algorithm": "erm", "seed": 0, "step": 40, "selection_rule": "training_domain", "selection_score": 0.6,
            "training_domains": domains, "domain_columns": ["site"], "holdout_domain": holdout,
            "trained_on": {"image_size": 32, "channels": 1, "domain_columns": ["site"], "domains": domains,
                           "label_names": ["COVID-19", "No Finding"]}}
    save_model(run_dir / "model.pt", build_network(cfg), cfg, meta)
    return run_dir


@pytest.fixture(scope="module")
def north_as_test(eval_ingest, tmp_path_factory):
    return _reingest(eval_ingest, tmp_path_factory.mktemp("trial4") / "ingest", test_sites=["north"])


def test_evaluate_refuses_a_test_split_holding_a_training_site(north_as_test, tmp_path, capsys):
    model = _model(tmp_path / "erm-s0", domains=["east", "north"])
    n_north = int(((read_manifest(north_as_test)["site"] == "north")).sum())
    with pytest.raises(DataError) as raised:
        run(model_dirs=[model], ingest_dir=north_as_test, out=tmp_path / "e", n_bootstrap=0)
    text = str(raised.value)
    assert f"got {n_north} rows of its training sites ['north']" in text
    assert str(model / "model.pt") in text and "the model trained on ['east', 'north']" in text
    assert "Re-ingest with test_sites that are not among the model's training sites" in text
    assert "--split val" in text
    code = main(["evaluate", str(model), "--ingest", str(north_as_test), "--out", str(tmp_path / "cli"),
                 "--n-bootstrap", "0"])
    assert code == 2 and "training sites ['north']" in capsys.readouterr().err
    assert not (tmp_path / "cli" / "metrics.json").exists()
    # in-distribution on purpose: the fix the message names runs
    metrics = run(model_dirs=[model], ingest_dir=north_as_test, out=tmp_path / "val", split="val",
                  n_bootstrap=0).metrics
    assert metrics["sites"] == ["east"]  # north's val rows went to test in this re-ingest


def test_audit_refuses_it_too(north_as_test, tmp_path, capsys):
    model = _model(tmp_path / "erm-s0", domains=["east", "north"])
    code = main(["audit", str(model), "--ingest", str(north_as_test), "--out", str(tmp_path / "a"),
                 "--methods", "saliency"])
    err = capsys.readouterr().err
    assert code == 2 and "audit: split 'test'" in err and "training sites ['north']" in err
    assert "`split: val` in the audit config" in err
    assert not (tmp_path / "a" / "audit.json").exists()


def test_a_held_out_domain_scored_as_test_still_runs(north_as_test, tmp_path):
    """Leave-one-domain-out: north was held out of training (meta holdout_domain), so its rows are new to it."""
    model = _model(tmp_path / "lodo", domains=["east"], holdout="north")
    metrics = run(model_dirs=[model], ingest_dir=north_as_test, out=tmp_path / "e", n_bootstrap=0).metrics
    assert metrics["sites"] == ["harbour", "north"]
    assert metrics["models"]["lodo"]["per_site"]["north"]["n"] == 16


def _rows(sites, positions, split="test"):
    return pd.DataFrame({"site": sites, "position": positions, "domain": sites, "split": split})


def test_check_new_sites_by_the_models_domain_columns():
    rows = _rows(["alpha", "gamma"], ["supine", "erect"])
    by_site_position = InputProfile(domain_columns=["site", "position"], domains=["alpha|supine", "beta|erect"])
    with pytest.raises(DataError, match=r"1 rows of its training sites \['alpha'\], domains \['alpha\|supine'\]"):
        check_new_sites(by_site_position, rows, split="ood_val", stage="evaluate", model_name="m.pt", ingest_dir="i")
    # the manifest's domain column, made of [site, sex] at ingest: still names the hospital
    by_domain = InputProfile(domain_columns=["domain"], ingest_domain_columns=["site", "sex"], domains=["alpha"])
    with pytest.raises(DataError, match="ood_val_sites"):
        check_new_sites(by_domain, rows, split="ood_val", stage="evaluate", model_name="m.pt", ingest_dir="i")
    # a domain that is not a hospital (position only) cannot tell a training site; val/train are in-distribution
    by_position = InputProfile(domain_columns=["position"], domains=["supine", "erect"])
    check_new_sites(by_position, rows, split="test", stage="evaluate", model_name="m.pt", ingest_dir="i")
    check_new_sites(by_site_position, rows, split="val", stage="evaluate", model_name="m.pt", ingest_dir="i")
