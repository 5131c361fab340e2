"""Every "not measured" carries the reason the producing stage recorded (metrics.json, audit.json), and an
aggregate over one run has no spread (std null + reason), never 0.0."""

import numpy as np
import pandas as pd

from pipeline.artefacts.history import parse_history_line
from pipeline.commands.audit import _reasons as audit_reasons
from pipeline.commands.evaluate import _num
from pipeline.evaluate.history import aggregate_models, summarise_history
from pipeline.evaluate.scoring import GroupScorer, score_frame
from pipeline.report.answers import headline_table
from pipeline.report.headline import headline


def _one_class_metrics():
    """metrics.json of one model on one all-negative site: AUROC undefined, with evaluate's reason."""
    frame = pd.DataFrame({"site": ["d"] * 6, "position": ["erect", "supine"] * 3, "label": [0] * 6})
    scorer = GroupScorer(threshold=0.5, selection_rule="training_domain", split="test", n_bootstrap=10)
    scored = score_frame(frame, np.linspace(0.1, 0.7, 6), scorer)
    entry = {"name": "m", "algorithm": "erm", "selection_rule": "training_domain", "upper_bound": False, "seed": 0,
             "history": {"test_acc": {"mean": 0.5}}, **scored}
    return {"split": "test", "models": {"m": entry}, "aggregates": aggregate_models({"m": entry})}


def test_mean_site_auroc_carries_the_site_reason():
    metrics = _one_class_metrics()
    mean = metrics["models"]["m"]["mean_site"]
    assert mean["auroc"] != mean["auroc"] or mean["auroc"] is None  # NaN here (null in JSON)
    assert mean["not_measured"]["auroc"] == "one class only (negative): auroc undefined"


def test_report_headline_shows_evaluate_reason_not_absent():
    from pipeline.stage import to_jsonable
    from tests.helpers.stage_outputs import metrics_file, model_entry

    scored = to_jsonable(_one_class_metrics()["models"]["m"])  # None, not NaN, as read back from strict JSON
    metrics = metrics_file({"m": model_entry("m", per_site=scored["per_site"], overall=scored["overall"],
                                             mean=scored["mean_site"])})
    lines = headline(metrics, None)
    block = lines["erm"]["by_rule"]["training_domain"]
    assert block["not_measured"]["test_site_auroc"] == "one class only (negative): auroc undefined"
    table = headline_table(lines)
    texts = [c.text for row in table.rows for c in row]
    assert any("one class only (negative)" in t for t in texts)
    assert not any("absent from the results" in t for t in texts)


def test_one_run_aggregate_has_null_std_with_reason():
    group = _one_class_metrics()["aggregates"]["erm|training_domain"]
    for key in ("mean_site_accuracy", "history_test_acc"):
        assert group[key]["std"] is None and group[key]["n"] == 1
        assert group[key]["not_measured"]["std"] == "1 run (n=1): no spread"
    two = aggregate_models({n: {"name": n, "algorithm": "erm", "selection_rule": "r", "upper_bound": False,
                                "seed": s, "mean_site": {"accuracy": a, "conflict_accuracy": a, "auroc": a},
                                "history": None} for n, s, a in (("a", 0, 0.2), ("b", 1, 0.4))})
    # sample sd over the two seeds (pipeline/artefacts/seeds.py): 0.1414, not the population sd 0.1
    assert abs(two["erm|r"]["mean_site_accuracy"]["std"] - 0.14142135623730953) < 1e-12
    one_eval = summarise_history([parse_history_line({"step": 5, "val_acc": 0.5, "test_acc": 0.6}, where="test")])
    assert one_eval["test_acc"]["std"] is None and "no spread" in one_eval["test_acc"]["not_measured"]["std"]


def test_consoles_say_the_recorded_reason():
    assert _num(None, "one class only (negative): auroc undefined") == \
        "not measured (one class only (negative): auroc undefined)"
    assert _num(0.25) == "0.250"
    block = {"lung_only_accuracy": None, "not_measured": {"lung_only_accuracy": "no lung mask for these images"}}
    skipped = [{"metric": "counterfactual_flip_rate", "reason": "the cache has no counterfactual arrays"}]
    why = audit_reasons(block, skipped)
    assert why["lung_only_accuracy"] == "no lung mask for these images"
    assert why["counterfactual_flip_rate"] == "the cache has no counterfactual arrays"


def test_an_unmeasured_aggregate_carries_the_runs_reason():
    group = _one_class_metrics()["aggregates"]["erm|training_domain"]
    assert group["mean_site_auroc"] is None
    assert "one class only (negative): auroc undefined" in group["not_measured"]["mean_site_auroc"]


def test_a_probe_on_an_all_unknown_attribute_says_so():
    from pipeline.audit.probes import ProbeBalancedAccuracy

    value, why = ProbeBalancedAccuracy(folds=2)(np.zeros((4, 3)), np.array(["unknown"] * 4))
    assert value != value and "unknown" in why and "[]" not in why


def test_accuracy_chart_names_evaluate_reason_for_an_unmeasured_conflicting_group():
    from pipeline.report.site_metrics import _group_reason
    from tests.helpers.stage_outputs import group_scores, metrics_file, model_entry

    metrics = metrics_file({"m": model_entry("m", per_site={"Delta": group_scores(not_measured={
        "conflict_accuracy": "no shortcut attribute is measurable: sex: 1 known level"})})})
    assert _group_reason(metrics, "Delta\n(conflicting)") == "no shortcut attribute is measurable: sex: 1 known level"
    assert _group_reason(metrics, "Delta\n(all)") == "no class counts in metrics.json"
