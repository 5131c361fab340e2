import json

import numpy as np
import pytest

from pipeline.audit import run
from pipeline.audit.config import AuditConfig
from pipeline.audit.data import AuditData
from pipeline.audit.interventions import region_ablation_share
from pipeline.audit.model_audit import audit_network, probe_block
from pipeline.evaluate import run as evaluate
from tests.helpers.tiny_cohort import unlabel_copy

CFG = AuditConfig(methods=["saliency", "grad_cam"], max_images=16, sanity_images=2, probe_max_images=48,
                  probe_folds=2, batch_size=8, overlays_per_stratum=1)


def strict_loads(text: str):
    def refuse(token: str):
        raise ValueError(f"non-standard JSON constant {token}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def positives_unlabelled(ingest_dir, tmp_path_factory):
    return unlabel_copy(ingest_dir, tmp_path_factory.mktemp("unlabelled") / "ingest", site="harbour", label=1)


def test_audit_uses_every_row_for_label_free_checks_and_labelled_rows_for_accuracy(
        run_dirs, positives_unlabelled, tmp_path):
    result = run(model_dirs=run_dirs[:1], ingest_dir=positives_unlabelled, out=tmp_path / "audit", config=CFG)
    audit = strict_loads(result.audit_path.read_text())
    assert audit["n_split"] == {"total": 16, "labelled": 8, "unlabelled": 8}
    assert any(s["metric"] == "accuracies on unlabelled images" for s in audit["skipped"])
    entry = audit["models"]["erm"]
    assert entry["methods"]["saliency"]["overall"]["n"] == 16  # attributions on unlabelled images too
    assert set(entry["methods"]["saliency"]["per_label"]) == {"0", "unknown"}
    inter = entry["interventions"]["overall"]
    assert (inter["n"], inter["n_labelled"], inter["n_counterfactual"]) == (16, 8, 16)
    assert inter["majority_accuracy"] == 1.0 and inter["lung_only_majority_accuracy"] == 1.0
    assert isinstance(inter["constant_predictor"], bool) and isinstance(inter["lung_only_constant_predictor"], bool)
    assert entry["region_ablation_share"]["overall"]["n"] == 16
    assert {o["label"] for o in audit["overlays"]} == {0, None}

    # one accuracy per checkpoint: the audit's unchanged-image accuracy is evaluate's, at evaluate's threshold
    metrics = evaluate(model_dirs=run_dirs[:1], ingest_dir=positives_unlabelled, out=tmp_path / "eval",
                       n_bootstrap=5, include_selected=False).metrics
    scored = metrics["models"]["erm"]
    assert entry["threshold"]["value"] == scored["threshold"]
    assert entry["threshold"]["source"] == scored["threshold_source"]
    assert inter["accuracy"] == pytest.approx(scored["overall"]["accuracy"])
    assert inter["constant_predictor"] == scored["overall"]["constant_predictor"]


def test_audit_of_a_split_without_labels_runs_the_label_free_parts(run_dirs, ingest_dir, tmp_path):
    ingest = unlabel_copy(ingest_dir, tmp_path / "ingest", site="harbour")
    data = AuditData.open(ingest, "test")
    block, _ = audit_network(_network(run_dirs[0]), data, CFG.model_copy(update={"methods": ["saliency"]}),
                             name="erm")
    inter = block["interventions"]["overall"]
    assert np.isnan(inter["accuracy"])  # NaN in Python, null in audit.json
    assert inter["not_measured"]["accuracy"] == "no labelled image"
    assert inter["n_labelled"] == 0 and inter["n"] == 16
    assert np.isfinite(block["methods"]["saliency"]["overall"]["lung_mass_fraction"])
    assert np.isfinite(inter["counterfactual_flip_rate"])


def _network(run_dir):
    from pipeline.models import load_model

    return load_model(run_dir / "model.pt")[0]


def test_region_shares_without_a_mask_are_null_with_a_reason():
    drops = np.array([[0.1, 0.5, np.nan, np.nan, np.nan, np.nan, np.nan],
                      [0.2, 0.2, np.nan, np.nan, np.nan, np.nan, np.nan]])
    shares = region_ablation_share(drops, has_lungs=np.ones(2, bool), has_shortcuts=np.zeros(2, bool))
    assert shares["lungs"] == pytest.approx((0.5 / 0.6 + 0.5) / 2)
    assert shares["outside_lungs"] == pytest.approx(1 - shares["lungs"])
    for kind in ("scapula_shoulder", "devices", "text_stamp", "site_mark", "collimation"):
        assert shares[kind] is None and shares["not_measured"][kind] == "no shortcut mask for these images"
    no_lungs = region_ablation_share(drops, has_lungs=np.zeros(2, bool), has_shortcuts=np.ones(2, bool))
    assert no_lungs["lungs"] is None and no_lungs["outside_lungs"] is None
    assert no_lungs["not_measured"]["lungs"] == "no lung mask for these images"
    assert no_lungs["text_stamp"] == 0.0  # a shortcut mask showing no stamp measures 0, it is not missing


def test_audit_without_lung_masks_writes_null_lung_shares_and_counts_masks(run_dirs, ingest_no_lungs, tmp_path):
    result = run(model_dirs=run_dirs[:1], ingest_dir=ingest_no_lungs, out=tmp_path,
                 config=CFG.model_copy(update={"methods": ["saliency"]}))
    audit = strict_loads(result.audit_path.read_text())
    assert audit["lung_masks"] == {"provided": 0, "estimated": 0, "absent": 8}
    shares = audit["models"]["erm"]["region_ablation_share"]["overall"]
    assert shares["lungs"] is None and shares["outside_lungs"] is None
    assert shares["not_measured"]["lungs"] == "no lung mask for these images"
    assert shares["site_mark"] is not None
    assert AuditData.open(ingest_no_lungs, "test", "ellipses").lung_counts() == {
        "provided": 0, "estimated": 8, "absent": 0}


def test_lung_masks_of_some_rows_only_restrict_lung_numbers_to_those_rows(run_dirs, ingest_dir, tmp_path):
    import shutil

    ingest = tmp_path / "ingest"
    shutil.copytree(ingest_dir, ingest)
    data = AuditData.open(ingest, "test")
    masks = np.load(ingest / "cache" / "lung_masks.npy")
    masks[data.frame["cache_index"].to_numpy()[:6]] = 0  # six test images lose their lung mask
    np.save(ingest / "cache" / "lung_masks.npy", masks)
    data = AuditData.open(ingest, "test")
    assert data.lung_counts() == {"provided": 10, "estimated": 0, "absent": 6}
    block, _ = audit_network(_network(run_dirs[0]), data, CFG.model_copy(update={"methods": ["saliency"]}),
                             name="erm")
    inter = block["interventions"]["overall"]
    assert inter["n_lung_masks"] == 10 and inter["n"] == 16
    assert block["region_ablation_share"]["overall"]["n_measured"]["lungs"] <= 10


def test_probe_of_a_one_class_attribute_is_null_with_a_reason_and_counts(run_dirs, ingest_dir, tmp_path):
    import shutil

    from pipeline.manifest import read_manifest, write_manifest

    ingest = tmp_path / "ingest"
    shutil.copytree(ingest_dir, ingest)
    frame = read_manifest(ingest)
    frame["view"] = "PA"
    write_manifest(frame, ingest)
    data = AuditData.open(ingest, "test")
    out = probe_block(_network(run_dirs[0]), data, CFG, ["position", "view"])
    assert out["probe_balanced_accuracy"]["view"] != out["probe_balanced_accuracy"]["view"]  # NaN until JSON
    assert "one class" in out["probe_not_measured"]["view"]
    assert out["probe_n_per_class"]["view"] == {"PA": out["probe_n_images"]}
    assert sum(out["probe_n_per_class"]["position"].values()) == out["probe_n_images"]
    assert np.isfinite(out["probe_balanced_accuracy"]["position"])
