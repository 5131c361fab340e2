import csv
import json

import numpy as np
import pytest

from pipeline.cli import main
from pipeline.errors import ConfigError, DataError
from pipeline.evaluate import run

SITE_KEYS = {"n", "accuracy", "balanced_accuracy", "auroc", "auroc_ci", "ece", "conflict_accuracy",
             "aligned_accuracy", "confusion_matrix", "selection_rule", "split"}


@pytest.fixture(scope="module")
def evaluated(eval_runs, eval_ingest, tmp_path_factory):
    return run(model_dirs=eval_runs, ingest_dir=eval_ingest, out=tmp_path_factory.mktemp("eval"), n_bootstrap=50)


def test_run_metrics_json_has_architecture_keys(evaluated):
    metrics = json.loads(evaluated.metrics_path.read_text())
    assert set(metrics["models"]) == {"erm", "erm@ood_validation", "fishr"}
    for entry in metrics["models"].values():
        assert {"algorithm", "seed", "selection_rule", "protocol", "threshold", "per_site", "per_group",
                "worst_site", "mean_site", "overall", "history"} <= set(entry)
        assert set(entry["per_site"]) == {"harbour"}
        assert SITE_KEYS <= set(entry["per_site"]["harbour"])
        assert set(entry["per_group"]) == {"harbour|erect", "harbour|supine"}
        assert entry["worst_site"]["accuracy"]["site"] == "harbour"
        assert entry["threshold_source"] == "val (training domains)"
    assert metrics["models"]["erm@ood_validation"]["selection_rule"] == "ood_validation"
    assert metrics["models"]["erm@ood_validation"]["checkpoint"] == "selected/ood_validation.pt"
    assert metrics["models"]["erm"]["history"]["test_acc"]["mean"] == pytest.approx(np.mean([0.31, 0.32, 0.33, 0.34]))
    assert metrics["models"]["fishr"]["history"] is None
    assert {"erm|training_domain", "erm|ood_validation", "fishr|training_domain"} == set(metrics["aggregates"])
    assert (evaluated.out / "stage.json").is_file()


def test_run_metadata_baseline_reads_the_position_shortcut(evaluated):
    baseline = evaluated.metrics["metadata_baseline_auroc"]
    # training sites: position agrees with the label 90% / 80%; the test site 75%: metadata alone is informative
    assert baseline["harbour"] > 0.6
    assert evaluated.metrics["metadata_baseline"]["n_train"] == 24


def test_run_metrics_csv_has_a_row_per_model_and_scope(evaluated):
    rows = list(csv.DictReader((evaluated.out / "metrics.csv").open()))
    models = {r["model"] for r in rows}
    assert models == {"erm", "erm@ood_validation", "fishr", "metadata_baseline"}
    assert {r["scope"] for r in rows} == {"overall", "site", "group", "mean_site"}
    site = next(r for r in rows if r["model"] == "fishr" and r["scope"] == "site")
    assert (site["n"], site["n_pos"], site["n_neg"], site["majority_accuracy"]) == ("16", "8", "8", "0.5")
    assert site["constant_predictor"] in ("True", "False")
    assert all(r["auroc"].lower() != "nan" for r in rows)


def test_run_unknown_split_raises_config_error(eval_runs, eval_ingest, tmp_path):
    with pytest.raises(ConfigError, match="split must be one of"):
        run(model_dirs=eval_runs, ingest_dir=eval_ingest, out=tmp_path, split="dev")


def test_run_missing_model_raises_data_error(eval_ingest, tmp_path):
    with pytest.raises(DataError, match="model.pt"):
        run(model_dirs=[tmp_path / "nowhere"], ingest_dir=eval_ingest, out=tmp_path / "o")


def test_evaluate_command_writes_metrics(eval_runs, eval_ingest, tmp_path, capsys):
    code = main(["evaluate", str(eval_runs[1]), "--ingest", str(eval_ingest), "--out", str(tmp_path),
                 "--n-bootstrap", "20", "--split", "ood_val", "--name", "F"])
    assert code == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert list(metrics["models"]) == ["F"] and metrics["sites"] == ["valley"]
    assert "F [training_domain]" in capsys.readouterr().out


def test_run_baseline_without_both_labels_in_train_is_noted_not_fatal(eval_runs, eval_ingest, tmp_path):
    import shutil

    import pandas as pd

    from pipeline.manifest import read_manifest, write_manifest

    ingest = tmp_path / "ingest"
    shutil.copytree(eval_ingest, ingest)
    frame = read_manifest(ingest)
    frame.loc[(frame["split"] == "train") & (frame["label"] == 1), "split"] = "val"
    write_manifest(pd.DataFrame(frame), ingest)
    metrics = run(model_dirs=eval_runs[1:], ingest_dir=ingest, out=tmp_path / "out", n_bootstrap=10).metrics
    assert "not fitted" in metrics["metadata_baseline"]["note"]
    assert metrics["metadata_baseline_auroc"] == {
        "overall": None, "mean_site": None,
        "not_measured": {"overall": metrics["metadata_baseline"]["note"], "mean_site": metrics["metadata_baseline"]["note"]}}
    assert metrics["models"]["fishr"]["per_site"]["harbour"]["n"] == 16
