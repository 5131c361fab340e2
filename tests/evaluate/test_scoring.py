import numpy as np
import pandas as pd
import pytest

from pipeline.artefacts.history import parse_history_line
from pipeline.evaluate.baseline import MetadataBaseline
from pipeline.evaluate.history import aggregate_models, summarise_history, value_at_step
from pipeline.evaluate.scoring import GroupScorer, score_frame
from pipeline.protocol.shortcuts import ShortcutDirection, conflict_aligned

SUPINE_COVID = ShortcutDirection("position", ("supine",), ("erect",), 0.5, 10)


def _frame():
    return pd.DataFrame({
        "site": ["a"] * 4 + ["b"] * 4,
        "position": ["erect", "supine", "supine", "erect", "erect", "supine", "erect", "supine"],
        "label": [1, 1, 0, 0, 1, 1, 1, 1],
    })


def test_shortcut_conflict_marks_covid_erect_and_negative_supine():
    conflict, aligned = conflict_aligned(_frame(), SUPINE_COVID)
    assert conflict.tolist() == [True, False, True, False, True, False, True, False]
    assert aligned.tolist() == [not c for c in conflict.tolist()]


def test_score_frame_single_class_site_has_nan_auroc_with_note_and_worst_site_named():
    prob = np.array([0.9, 0.8, 0.2, 0.1, 0.9, 0.2, 0.9, 0.2])
    scorer = GroupScorer(threshold=0.5, selection_rule="training_domain", split="test", n_bootstrap=50,
                         directions={"position": SUPINE_COVID})
    out = score_frame(_frame(), prob, scorer)
    site_b = out["per_site"]["b"]
    assert np.isnan(site_b["auroc"]) and np.isnan(site_b["auroc_ci"][0])
    assert any("one class" in n for n in site_b["notes"])
    assert "one class" in site_b["not_measured"]["auroc"] and "auroc" not in out["per_site"]["a"]["not_measured"]
    assert out["per_site"]["a"]["auroc"] == 1.0
    assert out["mean_site"]["auroc"] == 1.0  # NaN sites are skipped in the mean
    assert out["worst_site"]["accuracy"] == {"site": "b", "value": 0.5}
    assert set(out["per_group"]) == {"a|erect", "a|supine", "b|erect", "b|supine"}
    assert site_b["selection_rule"] == "training_domain" and site_b["split"] == "test"
    assert out["per_site"]["a"]["conflict_accuracy"] == 1.0 and site_b["conflict_accuracy"] == 1.0
    assert site_b["aligned_accuracy"] == 0.0


def test_metadata_baseline_learns_the_position_shortcut():
    rng = np.random.default_rng(0)
    n = 200
    label = rng.integers(0, 2, n)
    supine = np.where(rng.random(n) < 0.9, label, 1 - label)
    frame = pd.DataFrame({"site": "north", "view": np.where(supine, "AP", "PA"),
                          "position": np.where(supine, "supine", "erect"), "age_group": "adult", "sex": "F",
                          "label": label})
    model = MetadataBaseline().fit(frame)
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(label, model.predict_proba(frame)) > 0.85
    unseen = frame.assign(site="harbour")  # an unseen site must not break prediction
    assert model.predict_proba(unseen).shape == (n,)


def _lines(rows):
    """history.jsonl lines as evaluate reads them (pipeline/artefacts/history.py)."""
    return [parse_history_line(row, where="test line") for row in rows]


def test_summarise_history_averages_last_evaluations_up_to_selected_step():
    rows = [{"step": s, "val_acc": 0.5, "test_acc": s / 100, "test_conflict_acc": None} for s in (10, 20, 30, 40)]
    rows.insert(1, {"step": 15, "loss": 1.0})
    out = summarise_history(_lines(rows), last_k=2, up_to_step=30)
    assert out["steps"] == [20, 30]
    assert out["test_acc"]["mean"] == pytest.approx(0.25)
    assert out["test_conflict_acc"] is None
    assert summarise_history(_lines([{"step": 1, "loss": 0.3}])) is None


def test_value_at_step_reads_the_evaluation_line_of_that_step_only():
    rows = _lines([{"step": 20, "loss": 0.4}, {"step": 20, "val_acc": 0.7}, {"step": 30, "val_acc": 0.8}])
    assert value_at_step(rows, 20, "val_acc") == 0.7
    assert value_at_step(rows, 25, "val_acc") is None
    assert value_at_step(rows, None, "val_acc") is None


def test_aggregate_models_groups_by_algorithm_and_rule():
    def entry(name, seed, acc):
        return {"name": name, "algorithm": "erm", "selection_rule": "training_domain", "upper_bound": False,
                "seed": seed, "mean_site": {"accuracy": acc, "conflict_accuracy": acc, "auroc": acc},
                "history": None}

    out = aggregate_models({"a": entry("a", 0, 0.2), "b": entry("b", 1, 0.4)})
    group = out["erm|training_domain"]
    assert group["n_runs"] == 2 and group["seeds"] == [0, 1]
    assert group["mean_site_accuracy"]["mean"] == pytest.approx(0.3)
    assert group["history_test_acc"] is None
    assert group["not_measured"] == {"history_test_acc": "no run has a history.jsonl with test_acc"}
