"""Every typed artefact model reproduces the file its stage writes, exactly: a tiny hand-built cohort
(tests/helpers/tiny_cohort.py) -> train (2 algorithms x 2 seeds) -> evaluate -> audit (landscape on)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pipeline.artefacts import field_tables
from pipeline.artefacts.audit import AuditFile
from pipeline.artefacts.history import EvaluationLine, TrainingLine, read_history
from pipeline.artefacts.metrics import MetricsFile
from pipeline.artefacts.model_meta import ModelMeta
from pipeline.artefacts.seeds import SeedSpread
from pipeline.artefacts.selection import SelectionFile
from pipeline.errors import DataError
from tests.helpers.tiny_cohort import build_ingest

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def pipeline_dirs(tmp_path_factory) -> dict[str, Path]:
    import pipeline.audit as audit
    import pipeline.evaluate as evaluate
    import pipeline.train as train
    from pipeline.audit.config import AuditConfig

    root = tmp_path_factory.mktemp("artefacts")
    ingest = build_ingest(root / "ingest", size=32, n_per_site=16)
    runs = []
    for algorithm in ("erm", "fishr"):
        for seed in (0, 1):
            config = {"algorithm": algorithm, "hparams": {"lr": 1e-3, "batch_size": 8}, "seed": seed,
                      "model": {"backbone": "resnet10t", "norm_layer": "group"}, "steps": 4, "eval_every": 2,
                      "checkpoint_every": 2, "eval_batch_size": 64, "device": "cpu"}
            runs.append(train.run(ingest_dir=ingest, config=config, out=root / f"{algorithm}_{seed}",
                                  progress=False).out)
    evaluate.run(model_dirs=runs, ingest_dir=ingest, out=root / "evaluate", n_bootstrap=20)
    config = AuditConfig(max_images=4, max_intervention_images=16, ig_steps=2, methods=["saliency"], sanity_images=2,
                         probe_max_images=40, probe_folds=2, overlays_per_stratum=1,
                         landscape={"enabled": True, "images_per_site": 4, "min_images": 2, "trace_images": 2,
                                    "trace_probes": 1, "bootstrap": 5})
    audit.run(model_dirs=runs[:1], ingest_dir=ingest, out=root / "audit", config=config)
    return {"runs": runs, "evaluate": root / "evaluate", "audit": root / "audit"}


def _file(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_metrics_and_audit_round_trip_exactly(pipeline_dirs):
    for model, folder in ((MetricsFile, pipeline_dirs["evaluate"]), (AuditFile, pipeline_dirs["audit"])):
        path = folder / model.FILENAME
        loaded = model.load(folder)
        # key order too: a writer building the model writes the very same text
        assert json.dumps(loaded.to_json_dict()) == json.dumps(_file(path))
    metrics = MetricsFile.load(pipeline_dirs["evaluate"])
    assert sorted(metrics.models) == ["erm_0", "erm_1", "erm_1@oracle", "fishr_0", "fishr_1", "fishr_1@oracle"]
    assert metrics.models["erm_0"].overall.n == 16
    assert AuditFile.load(pipeline_dirs["audit"]).landscape.measured is True


def test_run_files_round_trip_exactly(pipeline_dirs):
    for run in pipeline_dirs["runs"]:
        selection = SelectionFile.load(run)
        assert json.dumps(selection.to_json_dict()) == json.dumps(_file(run / "selection.json"))
        assert "training_domain" in selection.rules()
        lines = read_history(run)
        raw = [json.loads(text) for text in (run / "history.jsonl").read_text(encoding="utf-8").splitlines()]
        assert [line.model_dump(mode="json") for line in lines] == raw
        assert [type(line) for line in lines] == [TrainingLine, TrainingLine, EvaluationLine] * 2
        for checkpoint in [run / "model.pt", *sorted((run / "selected").glob("*.pt"))]:
            meta = torch.load(checkpoint, map_location="cpu", weights_only=False)["meta"]
            assert ModelMeta.from_meta(meta, where=str(checkpoint)).to_dict() == meta


def test_landscape_not_run_block_is_typed(pipeline_dirs):
    from pipeline.audit.landscape import not_run

    data = _file(pipeline_dirs["audit"] / "audit.json")
    data["landscape"] = not_run("landscape.enabled is false in the audit config").model_dump(mode="json")
    assert AuditFile.from_dict(data).to_json_dict()["landscape"] == data["landscape"]


@pytest.mark.parametrize("change, words", [
    (lambda d: d.update(schema_version=99), "schema_version 99"),
    (lambda d: d.update(extra_key=1), "extra_key"),
    (lambda d: next(iter(d["models"].values()))["overall"].update(accuracy=float("nan")), "finite"),
])
def test_broken_metrics_file_is_a_data_error_naming_the_file(pipeline_dirs, tmp_path, change, words):
    data = _file(pipeline_dirs["evaluate"] / "metrics.json")
    change(data)
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps(data), encoding="utf-8")  # json.dumps writes NaN: the file a strict reader refuses
    with pytest.raises(DataError) as info:
        MetricsFile.load(path)
    assert str(path) in str(info.value) and words in str(info.value)


def test_broken_history_line_names_file_and_line(tmp_path):
    (tmp_path / "history.jsonl").write_text('{"step": 1, "loss": 0.5}\n{"step": 2, "loss": Infinity}\n')
    with pytest.raises(DataError, match=r"history.jsonl line 2"):
        read_history(tmp_path)
    (tmp_path / "history.jsonl").write_text('{"step": 1, "loss": 0.5}\nnot json\n')
    with pytest.raises(DataError, match=r"history.jsonl line 2"):
        read_history(tmp_path)


def test_seed_spread_is_the_sample_sd():
    two = SeedSpread.from_values([0.50, 0.54])
    assert two.sd == pytest.approx(0.028284, abs=1e-6)  # population sd would be 0.02
    assert two.text() == "52.0% ± 2.8"
    assert two.text(with_n=True) == "52.0% ± 2.8 (n=2)"
    assert two.block() == {"mean": pytest.approx(0.52), "std": pytest.approx(0.028284, abs=1e-6), "n": 2}
    one = SeedSpread.from_values([0.5, None, float("nan")])
    assert (one.n, one.sd, one.block()["not_measured"]) == (1, None, {"std": "1 run (n=1): no spread"})
    assert SeedSpread.from_values([]).block() is None


def test_artefacts_doc_lists_every_field():
    text = (REPO / "docs" / "design" / "artefacts.md").read_text(encoding="utf-8")
    assert field_tables() in text, "docs/design/artefacts.md is stale: run pipeline.artefacts.write_doc()"


def test_sweep_selection_round_trips_both_shapes():
    from pipeline.artefacts.selection import SweepSelectionFile
    from pipeline.protocol.across_runs import select_across_runs

    def run(draw, seed, score):
        choice = {"step": 4 if score is not None else None, "score": score, "constant_predictor": score is None}
        return {"draw": draw, "trial_seed": seed, "holdout": None, "dir": f"runs/d{draw}s{seed}",
                "hparams": {"lr": 10.0 ** -(draw + 2), "batch_size": 8},
                "selection": {"training_domain": choice, "ood_validation": dict(choice, score=None), "oracle": choice}}

    chosen = select_across_runs([run(0, 0, 0.6), run(0, 1, 0.7), run(1, 0, 0.9), run(1, 1, None)],
                                ["training_domain", "ood_validation", "oracle"])
    model = SweepSelectionFile.from_dict(chosen)
    assert json.dumps(model.to_json_dict()) == json.dumps(chosen)
    assert model.training_domain.draw == 0 and model.training_domain.scores == [0.6, 0.7]  # draw 1 has a constant run
    assert model.ood_validation.draw is None and model.ood_validation.note
    assert model.oracle.label and model.leave_one_domain_out is None


def test_sweep_selection_per_hospital_is_read_per_hospital(tmp_path):
    from pipeline.artefacts.selection import SweepSelectionFile, read_sweep_selection

    nothing = {"draw": None, "score": None, "note": "no run had a non-constant checkpoint"}
    data = {"north": {"training_domain": nothing, "ood_validation": nothing, "oracle": dict(nothing, label="upper")}}
    (tmp_path / "selection.json").write_text(json.dumps(data), encoding="utf-8")
    read = read_sweep_selection(tmp_path)
    assert list(read) == ["north"] and isinstance(read["north"], SweepSelectionFile)
    assert read["north"].oracle.label == "upper"


def test_stage_json_of_train_evaluate_audit_and_report_round_trips(pipeline_dirs, tmp_path):
    """stage.json as each stage writes it (standard keys, the runner's fingerprint where there is one, the stage's
    extras) is StageFile's content, key for key; an unknown key is a DataError naming the file."""
    import pipeline.report as report
    from pipeline.artefacts.stage_file import StageFile, load_stage

    report.run(evaluate_dir=pipeline_dirs["evaluate"], audit_dir=pipeline_dirs["audit"], out=tmp_path / "report")
    folders = {"train": pipeline_dirs["runs"][0], "evaluate": pipeline_dirs["evaluate"],
               "audit": pipeline_dirs["audit"], "report": tmp_path / "report"}
    for stage, folder in folders.items():
        loaded = load_stage(folder)
        assert loaded.to_json_dict() == _file(folder / "stage.json"), stage
        assert loaded.stage == stage and loaded.inputs and loaded.seconds >= 0
    assert load_stage(folders["train"]).training_domains and load_stage(folders["train"]).final_step == 4
    assert len(load_stage(folders["evaluate"]).models) == 6 and load_stage(folders["audit"]).models == ["erm_0"]
    assert load_stage(folders["report"]).figures
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "stage.json").write_text(json.dumps({**_file(folders["audit"] / "stage.json"), "typo": 1}))
    with pytest.raises(DataError, match=r"broken/stage.json does not match StageFile: typo"):
        load_stage(broken)
    assert load_stage(tmp_path / "nowhere") is None and StageFile.FILENAME == "stage.json"
