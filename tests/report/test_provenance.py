from pipeline.artefacts.audit import AuditFile
from pipeline.artefacts.metrics import MetricsFile
from pipeline.artefacts.stage_file import StageFile
from pipeline.report.loading import ReportInputs
from pipeline.report.provenance import REDACTED, build_provenance, redact
from tests.helpers.audit_outputs import audit_json
from tests.helpers.stage_outputs import group_scores, metrics_json, model_entry
from tests.helpers.stage_record import stage_json


def test_redact_nested_salt_and_patient_keys_are_replaced():
    config = {"salt": "s3cret", "ingest": {"patient_key_salt": "x", "size": 64},
              "rows": [{"PatientName": "Doe^John", "site": "north"}]}
    clean = redact(config)
    assert clean["salt"] == REDACTED and clean["ingest"]["patient_key_salt"] == REDACTED
    assert clean["ingest"]["size"] == 64
    assert clean["rows"][0]["PatientName"] == REDACTED and clean["rows"][0]["site"] == "north"


def test_build_provenance_configs_never_contain_salt_values():
    stage = StageFile.from_dict(stage_json(
        "train", config={"salt": "do-not-show", "size": 64}, seconds=1.5, seed=0, git_commit="abc123",
        versions={"torch": "2.14.1"}, warnings=["lesion masks: none found"]))
    section = build_provenance(ReportInputs(stages={"train: m": stage}))
    text = " ".join(c["text"] for c in section["configs"])
    assert "do-not-show" not in text and "64" in text
    assert section["notes"] == ["train: m (warnings): lesion masks: none found"]
    assert section["versions"] == [("torch", "2.14.1")]


def test_build_provenance_lists_audit_skips_and_evaluate_notes_once():
    audit = AuditFile.from_dict(audit_json(
        {}, skipped=[{"metric": "counterfactual_flip_rate", "reason": "no counterfactual arrays"}],
        lung_masks={"provided": 0, "estimated": 10, "absent": 0}))
    note = "harbour|erect has one class: AUROC undefined"
    site = group_scores(notes=[note])
    metrics = MetricsFile.from_dict(metrics_json({
        name: model_entry(name, per_site={"harbour": site}, overall=group_scores(notes=[note]))
        for name in ("a", "b")}))
    notes = build_provenance(ReportInputs(audit=audit, metrics=metrics))["notes"]
    assert "audit skipped counterfactual_flip_rate: no counterfactual arrays" in notes
    assert any("ESTIMATED" in n for n in notes)
    # the same note of two models and two scopes (overall, harbour) is listed once per scope
    assert [n for n in notes if "AUROC undefined" in n] == [f"evaluate (overall): {note}",
                                                             f"evaluate (harbour): {note}"]


def test_command_column_reads_from_the_start_and_switches_are_not_redacted():
    from pipeline.report.provenance import COMMAND_WIDTH, command_text

    argv = ["/work/main/.venv/bin/cxr-fishr", "ingest", "--config", "/very/long/path/" + "x" * 120 + ".yaml",
            "--out", "runs/ing"]
    shown = command_text(argv)
    assert shown.startswith("cxr-fishr ingest --config /very/long/path/") and shown.endswith("…")
    assert len(shown) == COMMAND_WIDTH
    stage = StageFile.from_dict(stage_json("ingest", command=argv,
                                           config={"age_from_birth": True, "birth_date": "1950-01-01"}))
    section = build_provenance(ReportInputs(stages={"ingest": stage}))
    cell = section["stages"].rows[0][-1]
    assert cell.text == shown and cell.title == " ".join(argv)
    text = section["configs"][0]["text"]
    assert '"age_from_birth": true' in text and "1950" not in text
