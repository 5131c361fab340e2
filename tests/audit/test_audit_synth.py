"""The audit and evaluate on what synth + ingest really write (not the hand-built cache): the contracts hold."""

import json

import pytest

from pipeline.audit import run as audit_run
from pipeline.audit.config import AuditConfig
from pipeline.evaluate import run as evaluate_run


@pytest.fixture(scope="module")
def synth_ingest(tmp_path_factory):
    import pipeline.ingest
    import pipeline.synth

    root = tmp_path_factory.mktemp("synth_cohort")
    pipeline.synth.run(config="configs/cohort/demo.yaml", out=root / "synth", n_per_site=10, size=64, seed=0,
                       counterfactual="position", workers=1, progress=False)
    pipeline.ingest.run(source=root / "synth" / "dicom", out=root / "ingest", metadata=root / "synth" / "labels.csv",
                        config="configs/ingest/synth_demo.yaml", size=32)
    return root / "ingest"


def test_audit_and_evaluate_on_synth_ingest_use_its_masks_and_counterfactuals(synth_ingest, run_dirs, tmp_path):
    cfg = AuditConfig(max_images=8, ig_steps=4, sanity_images=2, probe_max_images=50, probe_folds=2,
                      methods=["integrated_gradients", "saliency"], overlays_per_stratum=0)
    audit = audit_run(model_dirs=run_dirs[:1], ingest_dir=synth_ingest, out=tmp_path / "audit", config=cfg).audit
    assert audit["lung_source"] == "manifest" and audit["shortcut_masks"] and audit["counterfactuals"]
    # the report compares the cohorts of its sections by the ingest's inputs hash
    cache_info = json.loads((synth_ingest / "cache" / "cache.json").read_text())
    assert audit["ingest_hash"] == cache_info["inputs_hash"] and len(audit["ingest_hash"]) == 64
    assert audit["lung_masks"] == {"provided": audit["n_split"]["total"], "estimated": 0, "absent": 0}
    entry = audit["models"]["erm"]
    inter = entry["interventions"]["overall"]
    assert inter["n_counterfactual"] == inter["n"] > 0
    assert 0.0 <= inter["counterfactual_flip_rate"] <= 1.0
    ig = entry["methods"]["integrated_gradients"]["overall"]
    assert 0.0 <= ig["lung_mass_fraction"] <= 1.0 and ig["n_valid"] > 0
    assert entry["region_ablation_share"]["overall"]["n_valid"] > 0

    metrics = evaluate_run(model_dirs=run_dirs[:1], ingest_dir=synth_ingest, out=tmp_path / "eval",
                           n_bootstrap=20).metrics
    assert metrics["sites"] == ["harbour"]
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["metadata_baseline_auroc"]["harbour"] >= 0


def test_synth_position_direction_reproduces_the_old_conflict_definition(synth_ingest):
    from pipeline.manifest import labelled, read_manifest
    from pipeline.protocol.shortcuts import conflict_aligned, estimate_directions, shortcut_attributes

    frame = read_manifest(synth_ingest)
    attributes, _ = shortcut_attributes(synth_ingest, frame)
    assert "position" in attributes
    direction = estimate_directions(frame, ["position"])["position"]
    assert direction.positive_associated == ("supine",) and direction.negative_associated == ("erect",)
    rows = labelled(frame)
    label = rows["label"].to_numpy().astype(int)
    position = rows["position"].astype(str).to_numpy()
    conflict, aligned = conflict_aligned(rows, direction)
    assert conflict.tolist() == (((label == 1) & (position == "erect")) | ((label == 0) & (position == "supine"))).tolist()
    assert aligned.tolist() == (((label == 1) & (position == "supine")) | ((label == 0) & (position == "erect"))).tolist()
