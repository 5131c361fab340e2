from pipeline.report.loading import ReportInputs
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


def test_command_column_reads_from_the_start_and_switches_are_not_redacted():
    from pipeline.report.provenance import COMMAND_WIDTH, command_text

    argv = ["/work/main/.venv/bin/cxr-fishr", "ingest", "--config", "/very/long/path/" + "x" * 120 + ".yaml",
            "--out", "runs/ing"]
    shown = command_text(argv)
    assert shown.startswith("cxr-fishr ingest --config /very/long/path/") and shown.endswith("…")
    assert len(shown) == COMMAND_WIDTH
    stage = {"command": argv, "config": {"age_from_birth": True, "birth_date": "1950-01-01"}}
    section = build_provenance(ReportInputs(stages={"ingest": stage}))
    cell = section["stages"].rows[0][-1]
    assert cell.text == shown and cell.title == " ".join(argv)
    text = section["configs"][0]["text"]
    assert '"age_from_birth": true' in text and "1950" not in text
