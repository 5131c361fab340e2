from pipeline.report.inputs import ReportInputs
from pipeline.report.provenance import REDACTED, build_provenance, redact


def test_redact_nested_salt_and_patient_keys_are_replaced():
    config = {"salt": "s3cret", "ingest": {"patient_key_salt": "x", "size": 64},
              "rows": [{"PatientName": "Doe^John", "site": "north"}]}
    clean = redact(config)
    assert clean["salt"] == REDACTED and clean["ingest"]["patient_key_salt"] == REDACTED
    assert clean["ingest"]["size"] == 64
    assert clean["rows"][0]["PatientName"] == REDACTED and clean["rows"][0]["site"] == "north"


def test_build_provenance_configs_never_contain_salt_values():
    stage = {"stage": "ingest", "config": {"salt": "do-not-show", "size": 64}, "seconds": 1.5, "seed": 0,
             "git_commit": "abc123", "versions": {"torch": "2.14.1"}, "command": ["cxr-fishr", "ingest"],
             "skipped": ["lesion masks: none found"]}
    section = build_provenance(ReportInputs(stages={"ingest": stage}))
    text = " ".join(c["text"] for c in section["configs"])
    assert "do-not-show" not in text and "64" in text
    assert any("lesion masks" in line for line in section["notes"])
    assert section["versions"] == [("torch", "2.14.1")]


def test_build_provenance_lists_audit_skips_and_evaluate_notes_once():
    audit = {"skipped": [{"metric": "counterfactual_flip_rate", "reason": "no counterfactual arrays"}],
             "lung_masks": "estimated"}
    block = {"notes": ["harbour|erect has one class: AUROC undefined"]}
    metrics = {"models": {"a": {"overall": block, "per_site": {}}, "b": {"overall": block, "per_site": {}}}}
    notes = build_provenance(ReportInputs(audit=audit, metrics=metrics))["notes"]
    assert any("counterfactual_flip_rate" in n and "no counterfactual arrays" in n for n in notes)
    assert any("ESTIMATED" in n for n in notes)
    assert sum("AUROC undefined" in n for n in notes) == 1
