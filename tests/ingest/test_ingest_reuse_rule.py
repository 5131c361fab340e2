"""ingest reuses by the stage runner's one rule: stage.json's fingerprint is the inputs hash, the same value that
cache.json keeps as the cohort's identity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.ingest import run as ingest
from pipeline.stage import STAGE_FILE, read_stage
from pipeline.synth import run as synth

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("cohort")
    return synth(config=REPO / "configs/cohort/demo.yaml", out=out, n_per_site=2, size=32, workers=1,
                 progress=False).out


def _ingest(cohort: Path, out: Path):
    return ingest(source=cohort / "dicom", out=out, metadata=cohort / "labels.csv",
                  config=REPO / "configs/ingest/synth_demo.yaml", size=16, workers=1, progress=False)


def test_fingerprint_is_the_cohort_identity_and_a_rerun_is_reused(cohort, tmp_path):
    first = _ingest(cohort, tmp_path / "ingest")
    inputs_hash = json.loads((tmp_path / "ingest" / "cache" / "cache.json").read_text())["inputs_hash"]
    assert not first.reused and read_stage(tmp_path / "ingest")["fingerprint"] == inputs_hash
    assert _ingest(cohort, tmp_path / "ingest").reused


def test_a_record_without_the_fingerprint_is_ingested_again(cohort, tmp_path):
    _ingest(cohort, tmp_path / "ingest")
    record = read_stage(tmp_path / "ingest")
    record.pop("fingerprint")  # an ingest folder written before the runner, or a half-finished one
    (tmp_path / "ingest" / STAGE_FILE).write_text(json.dumps(record))
    again = _ingest(cohort, tmp_path / "ingest")
    assert not again.reused and read_stage(tmp_path / "ingest")["fingerprint"]


def test_synth_and_ingest_stage_json_round_trip_through_stage_file(cohort, tmp_path):
    from pipeline.artefacts.stage_file import load_stage

    _ingest(cohort, tmp_path / "ingest")
    for folder, stage in ((cohort, "synth"), (tmp_path / "ingest", "ingest")):
        loaded = load_stage(folder)
        assert loaded.to_json_dict() == json.loads((folder / STAGE_FILE).read_text(encoding="utf-8"))
        assert loaded.stage == stage and loaded.fingerprint == read_stage(folder)["fingerprint"]
    assert load_stage(cohort).rendered == 10 and load_stage(tmp_path / "ingest").counts["n_images"] == 10
