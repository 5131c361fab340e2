"""Issue 11 in audit: the console says only what was measured ("all labelled", never "0 unlabelled: label-free
checks only"), and audit picks the threshold by evaluate's rule: on an ingest that is not the model's training
ingest, no threshold is chosen on its rows; without a stored one it is 0.5 with a counted, printed warning."""

import json
import shutil

import torch

from pipeline.cli import main
from pipeline.models import ModelConfig, build_network, save_model


def test_audit_console_and_threshold_on_a_foreign_ingest(ingest_dir, tmp_path, capsys):
    ingest = tmp_path / "ingest"
    shutil.copytree(ingest_dir, ingest)
    info_path = ingest / "cache" / "cache.json"
    info_path.write_text(json.dumps({**json.loads(info_path.read_text()), "inputs_hash": "b" * 64}))
    torch.manual_seed(0)
    cfg = ModelConfig(backbone="resnet10t")
    meta = {"algorithm": "erm", "seed": 0, "step": 40, "selection_rule": "training_domain", "selection_score": 0.6,
            "training_domains": ["east", "north"], "domain_columns": ["site"],
            "trained_on": {"image_size": 32, "channels": 1, "domain_columns": ["site"], "domains": ["east", "north"],
                           "ingest_hash": "a" * 64, "label_names": ["COVID-19", "No Finding"]}}
    save_model(tmp_path / "erm" / "model.pt", build_network(cfg), cfg, meta)
    config = tmp_path / "audit.yaml"
    config.write_text("max_images: 4\nig_steps: 2\nsanity_images: 1\nprobe_max_images: 40\nprobe_folds: 2\n"
                      "occlusion_window: 0.5\nocclusion_stride: 0.5\nmax_intervention_images: 8\n")
    out = tmp_path / "out"
    assert main(["audit", str(tmp_path / "erm"), "--ingest", str(ingest), "--out", str(out), "--config", str(config),
                 "--methods", "saliency"]) == 0
    console = capsys.readouterr().out
    assert "all labelled;" in console and "0 unlabelled" not in console
    audit = json.loads((out / "audit.json").read_text())
    threshold = audit["models"]["erm"]["threshold"]
    assert threshold["value"] == 0.5 and "not the model's training ingest" in threshold["source"]
    assert audit["n_warnings"] == 1 and audit["warnings"][0].startswith("erm: threshold is the 0.5 default, as this")
    assert "warning: erm: threshold is the 0.5 default" in console
    # the console's "threshold X from SOURCE" reads as a sentence (new-user trial: "from stored with the model (...)")
    assert ", threshold 0.500 from the 0.5 default, as this ingest is not the model's training ingest: " in console
