"""The demo is a list of stage declarations handed to the stage runner: a second run reuses every stage, and
changing one training run's override reruns only that run and the stages after it (evaluate, audit, report)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.demo import DemoConfig, DemoStages, run
from pipeline.stage import read_stage

REPO = Path(__file__).resolve().parent.parent
TINY_AUDIT = {"max_images": 4, "max_intervention_images": 12, "ig_steps": 2, "internal_batch_size": 16,
              "probe_max_images": 30, "probe_folds": 2, "sanity_images": 1, "batch_size": 8}


def tiny(tmp: Path, *, fishr_steps: int = 4) -> DemoConfig:
    return DemoConfig.model_validate({
        "out": str(tmp / "runs"), "report": str(tmp / "report"), "workers": 1,
        "cohort": {"config": str(REPO / "configs/cohort/demo.yaml"), "n_per_site": 8, "size": 48, "seed": 0},
        "ingest": {"config": str(REPO / "configs/ingest/synth_demo.yaml"), "size": 32},
        "train": {"seeds": [0],
                  "overrides": {"steps": 4, "eval_every": 2, "checkpoint_every": 2, "hparams": {"batch_size": 4},
                                "model": {"backbone": "test_resnet", "norm_layer": "group"}},
                  "algorithms": {"erm": {"config": str(REPO / "configs/train/erm.yaml")},
                                 "fishr": {"config": str(REPO / "configs/train/fishr.yaml"),
                                           "overrides": {"steps": fishr_steps}}}},
        "evaluate": {"n_bootstrap": 5, "last_k": 1, "batch_size": 32},
        "audit": {"config": str(REPO / "configs/audit/default.yaml"), "overrides": TINY_AUDIT},
    })


def test_train_declarations_fingerprint_config_not_threads(tmp_path):
    ingest = tmp_path / "ingest"
    ingest.mkdir()
    (ingest / "stage.json").write_text(json.dumps({"stage": "ingest", "finished": "now", "fingerprint": "x"}))
    one = {s.out.name: s for s in DemoStages(tiny(tmp_path), REPO).train(ingest)}
    other = {s.out.name: s for s in DemoStages(tiny(tmp_path, fishr_steps=6), REPO).train(ingest)}
    parallel = {s.out.name: s for s in DemoStages(tiny(tmp_path), REPO).train(ingest, parallel=True)}
    assert sorted(one) == ["erm-s0", "fishr-s0"]
    assert one["erm-s0"].fingerprint() == other["erm-s0"].fingerprint()
    assert one["fishr-s0"].fingerprint() != other["fishr-s0"].fingerprint()
    assert one["fishr-s0"].config["steps"] == 4 and other["fishr-s0"].config["steps"] == 6
    # one torch thread per parallel run changes speed only: same fingerprint, but the run is told
    assert parallel["erm-s0"].fingerprint() == one["erm-s0"].fingerprint()
    assert parallel["erm-s0"].compute.keywords["config"]["threads"] == 1
    before = one["erm-s0"].fingerprint()
    (ingest / "stage.json").write_text(json.dumps({"stage": "ingest", "finished": "later", "fingerprint": "y"}))
    assert one["erm-s0"].fingerprint() != before  # an ingest that reran: every run's inputs changed


@pytest.mark.slow
def test_second_run_reuses_every_stage_and_one_changed_override_reruns_only_that_run_and_after(tmp_path):
    first_lines: list[str] = []
    first = run(config=tiny(tmp_path), echo=first_lines.append)
    assert not any(t["reused"] for t in first.timings.values()), first.timings
    assert [line.split(":")[0] for line in first_lines if line.startswith("[")] == [
        "[1/5] synth", "[2/5] ingest", "[3/5] train", "[4/5] evaluate + audit", "[5/5] report -> "
        + str(tmp_path / "report") + "/index.html"]
    runs = Path(tmp_path / "runs")
    records = {name: (runs / name / "stage.json").read_bytes()
               for name in ("cohort", "ingest", "models/erm-s0", "models/fishr-s0", "evaluate", "audit")}
    assert not (runs / "demo_state.json").exists()

    lines: list[str] = []
    again = run(config=tiny(tmp_path), echo=lines.append)
    assert all(t["reused"] for t in again.timings.values()), again.timings
    assert "[1/5] synth: reusing" in lines[0] and "(inputs unchanged)" in lines[0]
    assert {name: (runs / name / "stage.json").read_bytes() for name in records} == records
    assert json.loads(again.summary_path.read_text())["algorithms"] == first.summary["algorithms"]

    changed = run(config=tiny(tmp_path, fishr_steps=6), echo=lines.append)
    timings = changed.timings
    assert timings["synth"]["reused"] and timings["ingest"]["reused"]
    assert not timings["train"]["reused"] and not timings["evaluate"]["reused"] and not timings["audit"]["reused"]
    assert any(line.startswith("[3/5] train: 2 runs (erm-s0, fishr-s0); reusing erm-s0") for line in lines)
    for name in ("cohort", "ingest", "models/erm-s0"):
        assert (runs / name / "stage.json").read_bytes() == records[name], name
    assert read_stage(runs / "models/fishr-s0")["config"]["steps"] == 6
    assert (runs / "models/fishr-s0" / "stage.json").read_bytes() != records["models/fishr-s0"]
