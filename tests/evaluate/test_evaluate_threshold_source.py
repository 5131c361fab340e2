"""Finding 5 (issue 11): the threshold is chosen only on the val rows of the MODEL's training domains of its own
ingest, never on the split being scored; elsewhere the threshold stored with the model, else 0.5 with a warning.
Finding 14: `--name erm fishr` (one --name, two values) names the fix instead of reading 'fishr' as a model dir."""

import json
import shutil

import pytest
import torch

from pipeline.cli import main
from pipeline.errors import DataError
from pipeline.evaluate import run
from pipeline.manifest import read_manifest, write_manifest
from pipeline.models import ModelConfig, build_network, save_model
from pipeline.runs import collect_models

OWN, OTHER = "a" * 64, "b" * 64
STORED = {"value": 0.37, "source": "train: val (training domains)", "step": 40, "n": 8, "n_pos": 4, "n_neg": 4}


def _ingest_copy(src, dst, *, inputs_hash: str, valley_to_val: bool):
    shutil.copytree(src, dst)
    info_path = dst / "cache" / "cache.json"
    info_path.write_text(json.dumps({**json.loads(info_path.read_text()), "inputs_hash": inputs_hash}))
    if valley_to_val:  # a val split holding a site the model never trained on
        frame = read_manifest(dst)
        frame.loc[frame["site"] == "valley", "split"] = "val"
        write_manifest(frame, dst)
    return dst


def _model(run_dir, *, stored: bool):
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="resnet10t")
    meta = {"algorithm": "erm", "seed": 0, "step": 40, "selection_rule": "training_domain", "selection_score": 0.6,
            "training_domains": ["east", "north"], "domain_columns": ["site"],
            "trained_on": {"image_size": 32, "channels": 1, "domain_columns": ["site"],
                           "domains": ["east", "north"], "ingest_hash": OWN,
                           "label_names": ["COVID-19", "No Finding"]},
            **({"threshold": STORED} if stored else {})}
    save_model(run_dir / "model.pt", build_network(cfg), cfg, meta)
    return run_dir


@pytest.fixture(scope="module")
def setup(eval_ingest, tmp_path_factory):
    root = tmp_path_factory.mktemp("threshold")
    own = _ingest_copy(eval_ingest, root / "own", inputs_hash=OWN, valley_to_val=True)
    other = _ingest_copy(eval_ingest, root / "other", inputs_hash=OTHER, valley_to_val=False)
    return own, other, _model(root / "stored", stored=True), _model(root / "bare", stored=False)


def _entry(model, ingest, out, split):
    metrics = run(model_dirs=[model], ingest_dir=ingest, out=out, split=split, n_bootstrap=0).metrics
    return metrics, metrics["models"][model.name]


def test_threshold_uses_only_the_models_training_domains(setup, tmp_path):
    own, _, stored, _ = setup
    metrics, entry = _entry(stored, own, tmp_path, "test")
    frame = read_manifest(own)
    val = frame[(frame["split"] == "val")]
    trained = val[val["site"].isin(["east", "north"])]
    assert len(val) > len(trained)  # the valley rows are val here, and left out of the threshold
    assert entry["threshold_source"] == "val (training domains)"
    assert entry["threshold_set"]["n"] == len(trained)
    assert not any("threshold is" in w for w in metrics["warnings"])


def test_foreign_ingest_uses_the_stored_threshold_never_the_scored_split(setup, tmp_path):
    _, other, stored, _ = setup
    _, entry = _entry(stored, other, tmp_path, "val")
    assert entry["threshold"] == pytest.approx(0.37)
    # it reads after "threshold 0.37 from ..." (report, audit console): where the number came from, then why
    assert entry["threshold_source"] == (f"train's val rows at step 40 (stored with the model, as this ingest is not "
                                         f"the model's training ingest: inputs hash {OTHER[:12]}, the model's "
                                         f"{OWN[:12]})")


def test_scoring_val_of_the_own_ingest_does_not_choose_on_val(setup, tmp_path):
    own, _, stored, _ = setup
    _, entry = _entry(stored, own, tmp_path, "val")
    assert entry["threshold"] == pytest.approx(0.37) and "scored split is val" in entry["threshold_source"]


def test_without_a_stored_threshold_it_is_half_with_a_counted_warning(setup, tmp_path):
    _, other, _, bare = setup
    metrics, entry = _entry(bare, other, tmp_path, "test")
    assert entry["threshold"] == 0.5 and entry["threshold_source"].startswith("the 0.5 default, as this ingest is not")
    assert entry["threshold_set"]["warning"]
    assert any(w.startswith("bare: threshold is the 0.5 default, as") for w in metrics["warnings"])


def test_name_given_once_with_two_values_names_the_fix(eval_runs, eval_ingest, tmp_path, capsys):
    erm = eval_runs[0]
    with pytest.raises(DataError, match=r"got 'fishr': no such file or folder.*--name erm --name fishr"):
        collect_models([erm, "fishr"], ["erm"])
    code = main(["evaluate", str(erm), "fishr", "--name", "erm", "--ingest", str(eval_ingest),
                 "--out", str(tmp_path / "e")])
    assert code == 2 and "repeat --name once per model" in capsys.readouterr().err
    assert not (tmp_path / "e" / "metrics.json").exists()
