import json
from pathlib import Path

import numpy as np
import pytest

from pipeline.audit import run
from pipeline.audit.config import AuditConfig
from pipeline.audit.data import AuditData
from pipeline.audit.model_audit import audit_network
from pipeline.cli import main
from pipeline.errors import ConfigError

SMALL = AuditConfig(max_images=8, ig_steps=4, internal_batch_size=32, sanity_images=2, probe_max_images=48,
                    probe_folds=3, occlusion_window=0.5, occlusion_stride=0.5, batch_size=8)
MODEL_KEYS = {"algorithm", "seed", "selection_rule", "methods", "interventions", "region_ablation_share",
              "region_ablation_abs_share", "probe_balanced_accuracy", "probe_chance"}
METHOD_KEYS = {"lung_mass_fraction", "shortcut_mass_fraction", "shortcut_mass_fraction_per_kind",
               "lung_focus_ratio", "pointing_game"}


@pytest.fixture(scope="module")
def audited(run_dirs, ingest_dir, tmp_path_factory):
    return run(model_dirs=run_dirs, ingest_dir=ingest_dir, out=tmp_path_factory.mktemp("audit"), config=SMALL)


def test_run_writes_audit_json_with_architecture_keys(audited):
    audit = json.loads(audited.audit_path.read_text())
    assert audit["lung_masks"] == {"provided": 16, "estimated": 0, "absent": 0} and audit["counterfactuals"] is True
    assert audit["lung_source"] == "manifest"
    assert Path(audit["ingest_dir"]).is_absolute()  # the report finds the cohort from any working directory
    assert set(audit["models"]) == {"erm", "fishr"}
    for entry in audit["models"].values():
        assert MODEL_KEYS <= set(entry)
        assert set(entry["methods"]) == set(SMALL.methods)
        for block in entry["methods"].values():
            assert METHOD_KEYS <= set(block["overall"])
            assert set(block["per_site"]) == {"harbour"}
            assert set(block["per_position"]) == {"erect", "supine"} and set(block["per_label"]) == {"0", "1"}
            assert "randomisation_rank_correlation" in block
        inter = entry["interventions"]["overall"]
        assert {"lung_only_accuracy", "lungs_removed_accuracy", "counterfactual_flip_rate"} <= set(inter)
        assert {"lungs", "rest", "text_stamp", "site_mark"} <= set(entry["region_ablation_share"]["overall"])
        # site, the default shortcut attributes (no ingest summary.json here) and age group
        assert set(entry["probe_balanced_accuracy"]) == {"site", "position", "view", "age_group"}
    assert audit["skipped"] == []
    assert (audited.out / "stage.json").is_file()


def test_run_writes_one_overlay_per_stratum_and_model(audited):
    overlays = audited.audit["overlays"]
    assert len(overlays) == 2 * 4  # models x (position x label strata of the test site)
    for record in overlays:
        path = audited.out / record["file"]
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_run_without_lung_masks_lists_skipped_metrics(run_dirs, ingest_no_lungs, tmp_path):
    result = run(model_dirs=run_dirs[:1], ingest_dir=ingest_no_lungs, out=tmp_path, config=SMALL)
    audit = result.audit
    skipped = {s["metric"] for s in audit["skipped"]}
    assert {"lung_mass_fraction", "lungs_removed_accuracy", "counterfactual_flip_rate"} <= skipped
    entry = audit["models"]["erm"]
    assert entry["interventions"]["overall"]["lung_only_accuracy"] is None
    assert entry["methods"]["saliency"]["overall"]["lung_mass_fraction"] is None
    assert entry["methods"]["saliency"]["overall"]["shortcut_mass_fraction"] is not None
    assert audit["lung_masks"] == {"provided": 0, "estimated": 0, "absent": 8} and audit["lung_source"] == "none"


def test_run_with_estimated_lungs_labels_them_estimated(ingest_no_lungs, shortcut_reader):
    data = AuditData.open(ingest_no_lungs, "test", lung_estimate="ellipses")
    assert data.lung_source == "estimated"
    block, _ = audit_network(shortcut_reader, data, SMALL.model_copy(update={"methods": ["saliency"]}), name="s")
    assert np.isfinite(block["methods"]["saliency"]["overall"]["lung_mass_fraction"])
    assert block["interventions"]["overall"]["lung_only_accuracy"] is not None


def test_audit_command_writes_audit_json_and_rejects_unknown_method(run_dirs, ingest_dir, tmp_path, capsys):
    config = tmp_path / "audit.yaml"
    config.write_text("max_images: 4\nig_steps: 2\nsanity_images: 1\nprobe_max_images: 40\nprobe_folds: 2\n"
                      "occlusion_window: 0.5\nocclusion_stride: 0.5\n")
    out = tmp_path / "out"
    code = main(["audit", str(run_dirs[0]), "--ingest", str(ingest_dir), "--out", str(out), "--config", str(config),
                 "--methods", "saliency,grad_cam"])
    assert code == 0
    assert set(json.loads((out / "audit.json").read_text())["models"]["erm"]["methods"]) == {"saliency", "grad_cam"}
    assert main(["audit", str(run_dirs[0]), "--ingest", str(ingest_dir), "--out", str(out), "--config", str(config),
                 "--methods", "lime"]) == 2
    assert "methods" in capsys.readouterr().err


def test_audit_config_rejects_unknown_key():
    from pipeline.config import validate_config

    with pytest.raises(ConfigError, match="unknown key"):
        validate_config(AuditConfig, {"n_steps": 3})
