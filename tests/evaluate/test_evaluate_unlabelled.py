import json

import pytest

from pipeline.cli import main
from pipeline.errors import DataError
from pipeline.evaluate import run
from pipeline.evaluate.samples import separation_warnings, size_warning
from tests.helpers.tiny_cohort import unlabel_copy


def strict_loads(text: str):
    """json.loads that fails on NaN/Infinity tokens (RFC 8259 JSON has none)."""
    def refuse(token: str):
        raise ValueError(f"non-standard JSON constant {token}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def positives_unlabelled(eval_ingest, tmp_path_factory):
    """The test site's 8 positives lose their label: 8 labelled negatives remain (a one-class site)."""
    return unlabel_copy(eval_ingest, tmp_path_factory.mktemp("unlabelled") / "ingest", site="harbour", label=1)


def test_evaluate_scores_labelled_rows_only_and_writes_strict_json(eval_runs, positives_unlabelled, tmp_path, capsys):
    assert main(["evaluate", str(eval_runs[1]), "--ingest", str(positives_unlabelled), "--out", str(tmp_path),
                 "--n-bootstrap", "20", "--name", "F"]) == 0
    assert "8 unlabelled skipped" in capsys.readouterr().out
    metrics = strict_loads((tmp_path / "metrics.json").read_text())
    strict_loads((tmp_path / "stage.json").read_text())
    assert metrics["n_unlabelled_skipped"] == 8 and metrics["n_images"] == 8
    entry = metrics["models"]["F"]
    assert entry["n_unlabelled_skipped"] == 8
    site = entry["per_site"]["harbour"]
    assert (site["n"], site["n_pos"], site["n_neg"]) == (8, 0, 8)
    assert site["auroc"] is None and site["auroc_ci"] == [None, None]
    assert "one class" in site["not_measured"]["auroc"]
    assert site["majority_accuracy"] == 1.0
    assert site["constant_predictor"] == (site["accuracy"] in (0.0, 1.0))
    assert site["shortcuts"]["position"]["n_conflict"] + site["shortcuts"]["position"]["n_aligned"] == 8
    assert entry["mean_site"]["auroc"] is None and "auroc" in entry["mean_site"]["not_measured"]
    assert any(w.startswith("test site harbour is small: n=8 (0 positive, 8 negative)") for w in metrics["warnings"])


def test_evaluate_split_without_labelled_rows_is_a_data_error(eval_runs, eval_ingest, tmp_path):
    ingest = unlabel_copy(eval_ingest, tmp_path / "ingest", site="harbour")
    with pytest.raises(DataError, match=r"split 'test' must hold labelled rows.*16 rows, 0 labelled.*--split"):
        run(model_dirs=eval_runs[1:], ingest_dir=ingest, out=tmp_path / "out", n_bootstrap=5)


def test_size_warning_names_counts_and_stays_quiet_for_large_balanced_sets():
    assert size_warning("val", n=200, n_pos=100, n_neg=100) is None
    assert "n=40 (5 positive, 35 negative)" in size_warning("val", n=40, n_pos=5, n_neg=35)
    assert "n=29" in size_warning("val", n=29, n_pos=15, n_neg=14)


def test_separation_warning_when_interval_is_wider_than_the_gap_between_models():
    def entry(auroc, low, high):
        return {"upper_bound": False, "per_site": {"h": {"auroc": auroc, "auroc_ci": [low, high]}}}

    close = {"a": entry(0.70, 0.60, 0.80), "b": entry(0.72, 0.62, 0.82)}
    (warning,) = separation_warnings(close)
    assert "wider than the gap" in warning and "0.200" in warning and "0.020" in warning
    apart = {"a": entry(0.55, 0.50, 0.60), "b": entry(0.90, 0.86, 0.94)}
    assert separation_warnings(apart) == []
    assert separation_warnings({"a": entry(0.7, 0.6, 0.8)}) == []  # one model: nothing to separate
