import json
from pathlib import Path

import pytest

from pipeline.cli import main
from pipeline.demo import _history_progress, _merge, load_demo_config
from pipeline.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]


def test_demo_yaml_validates_and_names_existing_config_files():
    cfg = load_demo_config(REPO / "configs/demo.yaml")
    assert set(cfg.train.algorithms) == {"erm", "fishr"}
    for path in [cfg.cohort.config, cfg.ingest.config, cfg.audit.config,
                 *[a.config for a in cfg.train.algorithms.values()]]:
        assert (REPO / path).is_file(), path


def test_demo_config_unknown_key_raises_config_error_naming_it(tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_text("train: {algorithms: {erm: {config: x.yaml}}}\nworkrs: 2\n")
    with pytest.raises(ConfigError, match="workrs"):
        load_demo_config(path)


def test_demo_config_repeated_seed_raises_config_error(tmp_path):
    path = tmp_path / "demo.yaml"
    path.write_text("train: {seeds: [0, 0], algorithms: {erm: {config: x.yaml}}}\n")
    with pytest.raises(ConfigError, match="distinct"):
        load_demo_config(path)


def test_merge_nested_override_keeps_sibling_keys():
    base = {"model": {"backbone": "a", "norm_layer": "group"}, "steps": 400}
    merged = _merge(base, {"model": {"backbone": "b"}, "steps": 10})
    assert merged == {"model": {"backbone": "b", "norm_layer": "group"}, "steps": 10}
    assert base["model"]["backbone"] == "a"


def test_history_progress_reads_last_step_and_caps_at_total(tmp_path):
    job = {"out": str(tmp_path), "steps": 20}
    assert _history_progress(job) == (0, 20)
    lines = [{"step": 5, "loss": 0.7}, {"step": 10, "val_acc": 0.5}, {"step": 30, "loss": 0.1}]
    (tmp_path / "history.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n{broken")
    assert _history_progress(job) == (20, 20)


def test_report_cli_without_inputs_exits_2_with_example(capsys, tmp_path):
    assert main(["report", "--out", str(tmp_path / "r")]) == 2
    assert "--evaluate or --audit must be given" in capsys.readouterr().err


def test_format_headline_prints_not_measured_with_its_reason_never_a_dash():
    from pipeline.demo import format_headline

    block = {"training_site_accuracy": {"mean": 0.9, "std": None}, "test_site_accuracy": {"mean": None},
             "counterfactual_flip_rate": {"mean": float("nan")},
             "not_measured": {"counterfactual_flip_rate": "no counterfactual arrays"}}
    text = format_headline({"algorithms": {"erm": {"by_rule": {"training_domain": block}}}})
    assert "90.0%" in text and "–" not in text and "nan" not in text.lower()
    assert "not measured: no counterfactual arrays" in text
    assert "not measured: absent from the results" in text


def test_format_headline_marks_a_lung_share_on_estimated_masks():
    from pipeline.artefacts.audit import AuditFile
    from pipeline.demo import format_headline
    from pipeline.report.headline import headline
    from tests.helpers.audit_outputs import audit_json, audit_model, region_shares
    from tests.helpers.stage_outputs import metrics_file, model_entry

    metrics = metrics_file({"erm": model_entry("erm")})
    models = {"erm": audit_model("erm", abs_share=region_shares(n=30, lungs=0.547))}
    audit = AuditFile.from_dict(audit_json(models, lung_masks={"provided": 0, "estimated": 30, "absent": 0},
                                           lung_source="estimated"))
    text = format_headline({"algorithms": headline(metrics, audit)})
    assert "54.7% est." in text and "ESTIMATED lung masks" in text
    audit = AuditFile.from_dict(audit_json(models, lung_masks={"provided": 30, "estimated": 0, "absent": 0}))
    assert "est." not in format_headline({"algorithms": headline(metrics, audit)})
