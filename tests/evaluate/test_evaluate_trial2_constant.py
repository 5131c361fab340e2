"""Trial 2, finding 1: train's selection check ("every evaluation predicted one class", at its arg-max cut-off 0.5 on
the rule's selection set) is carried as ``selection.constant_at_selection`` (split, threshold, n); the model's
``constant_predictor`` says only whether the SCORED predictions (evaluate's split, evaluate's threshold) are one
class. Real evaluate runs on a tiny hand-built ingest with an untrained network."""

import json
import shutil

import numpy as np
import pytest
import torch

from pipeline.evaluate import run as evaluate_run
from pipeline.manifest import read_manifest
from tests.helpers.tiny_cohort import save_run

HASH = "trial2-ingest-hash"
SELECTION = {"training_domain": {"step": None, "score": None, "selected": False, "constant_predictor": True,
                                 "constant_evaluations_skipped": 4, "evaluations": 4,
                                 "reason": "every one of the 4 evaluations predicted one class on its val selection "
                                           "set (constant predictor)"}}


def _ingest_with_hash(source, out, inputs_hash):
    shutil.copytree(source, out)
    info_path = out / "cache" / "cache.json"
    info = json.loads(info_path.read_text())
    info["inputs_hash"] = inputs_hash
    info_path.write_text(json.dumps(info))
    return out


def _run_trained_on(root, inputs_hash):
    """A run whose selection found every evaluation constant; the model file names its training ingest."""
    run = save_run(root / "erm", algorithm="erm", seed=3, selected_rules=())
    payload = torch.load(run / "model.pt", map_location="cpu", weights_only=False)
    payload["meta"]["trained_on"] = {"ingest_hash": inputs_hash, "domains": ["north", "east"],
                                     "domain_columns": ["site"]}
    payload["meta"]["constant_predictor"] = True
    torch.save(payload, run / "model.pt")
    (run / "selection.json").write_text(json.dumps(SELECTION))
    return run


def _scored_constant(block):
    (tn, fp), (fn, tp) = block["confusion_matrix"]
    return tn + fn == 0 or fp + tp == 0


@pytest.fixture(scope="module")
def scored(eval_ingest, tmp_path_factory):
    root = tmp_path_factory.mktemp("trial2_constant")
    ingest = _ingest_with_hash(eval_ingest, root / "ingest", HASH)
    run = _run_trained_on(root, HASH)
    metrics = evaluate_run(model_dirs=[run], ingest_dir=ingest, out=root / "eval", n_bootstrap=0).metrics
    return ingest, run, metrics


def test_constant_predictor_rests_on_the_scored_predictions(scored):
    _, _, metrics = scored
    entry = metrics["models"]["erm"]
    assert not _scored_constant(entry["overall"]), "this setup must score mixed predictions"
    assert entry["constant_predictor"] is False and entry["constant_on_split"] is False
    assert entry["selection"]["constant_predictor"] is True  # train's fact is still carried, as its own key


def test_constant_at_selection_names_split_threshold_and_count(scored):
    ingest, _, metrics = scored
    frame = read_manifest(ingest)
    val = frame[(frame["split"] == "val") & frame["site"].isin(["north", "east"]) & frame["label"].notna()]
    fact = metrics["models"]["erm"]["selection"]["constant_at_selection"]
    assert (fact["split"], fact["threshold"], fact["n"], fact["evaluations"]) == ("val", 0.5, len(val), 4)
    words = f"at selection, on {len(val)} validation images of the training hospitals at threshold 0.5, every " \
            "prediction was one class (all 4 evaluations)"
    assert fact["text"] == words
    reason = metrics["models"]["erm"]["selection"]["reason"]
    assert reason.startswith(f"no checkpoint selected: {words}") and "final weights (step 40)" in reason
    assert any(w == f"erm: {reason}" for w in metrics["warnings"])


def test_a_foreign_ingest_does_not_count_the_selection_set(scored, tmp_path):
    ingest, run, _ = scored
    other = _ingest_with_hash(ingest, tmp_path / "other", "another-hash")
    metrics = evaluate_run(model_dirs=[run], ingest_dir=other, out=tmp_path / "eval", n_bootstrap=0).metrics
    entry = metrics["models"]["erm"]
    fact = entry["selection"]["constant_at_selection"]
    assert fact["n"] is None and "not the model's training ingest" in fact["n_not_measured"]
    assert fact["text"].startswith("at selection, on validation images of the training hospitals at threshold 0.5")
    assert entry["constant_predictor"] is _scored_constant(entry["overall"])
    assert metrics["ingest_hash"] == "another-hash"
    assert np.isfinite(entry["threshold"])
