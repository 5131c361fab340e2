"""Trial 2, findings 1 and 2: the summary's "constant predictor" rests on the scored predictions only (train's
selection check is worded as what it is), and every headline figure is what its caption says (training sites at the
selected checkpoint only; seeds counted as the sentence counts them; the split named). Small real metrics.json
dicts as evaluate writes them."""

import copy

from pipeline.report.answers import build_summary

FACT = {"rule": "training_domain", "split": "val", "threshold": 0.5, "n": 6, "evaluations": 3,
        "n_not_measured": None,
        "text": "at selection, on 6 validation images of the training hospitals at threshold 0.5, every prediction "
                "was one class (all 3 evaluations)"}
MIXED = {"n": 11, "accuracy": 0.545, "auroc": 0.3, "n_pos": 10, "n_neg": 1, "majority_accuracy": 0.909,
         "confusion_matrix": [[0, 1], [4, 6]], "constant_predictor": False}
ONE_CLASS = {**MIXED, "accuracy": 0.909, "confusion_matrix": [[0, 1], [0, 10]], "constant_predictor": True}


def _entry(seed=0, *, block=MIXED, selected=False, val_at_step=None):
    selection = {"rule": "training_domain", "step": 12 if selected else None, "selected": selected,
                 "constant_predictor": not selected, "constant_at_selection": None if selected else FACT,
                 "reason": "selected at step 12" if selected else
                 f"no checkpoint selected: {FACT['text']}; model.pt holds the final weights (step 12)"}
    return {"algorithm": "erm", "selection_rule": "training_domain", "seed": seed, "threshold": 0.5877,
            "threshold_source": "val (training domains)", "upper_bound": False, "split": "test",
            "constant_predictor": block["constant_predictor"], "constant_on_split": block["constant_predictor"],
            "selection": selection, "overall": copy.deepcopy(block), "per_site": {"Harbour": copy.deepcopy(block)},
            "mean_site": copy.deepcopy(block), "val_acc_at_step": val_at_step,
            "history": {"last_k": 5, "n_evaluations": 3, "steps": [4, 8, 12],
                        "val_acc": {"mean": 0.5556, "std": 0.157, "min": 0.333, "max": 0.667}},
            "not_measured": {} if val_at_step is not None else {"val_acc_at_step": selection["reason"]}}


def _metrics(models, split="test"):
    return {"split": split, "sites": ["Harbour"], "models": models, "conflict_attribute": "position"}


def _row(summary):
    table = summary["headline"]
    return {column: cell.text for column, cell in zip(table.columns, table.rows[0], strict=True)}


def test_train_selection_check_is_not_called_a_constant_predictor():
    summary = build_summary(_metrics({"m_erm": _entry()}), None)
    answer = summary["answers"][0]
    assert "constant predictor" not in answer["verdict"] and "reads nothing" not in answer["verdict"]
    assert answer["verdict"].startswith("has no checkpoint selected (m_erm: at selection, on 6 validation images of "
                                        "the training hospitals at threshold 0.5, every prediction was one class")
    assert _row(summary)["algorithm"] == "erm"  # no "(constant!)"
    numbers = summary["numbers"]["erm"]
    assert numbers["constant_predictor"] == [] and numbers["constant_at_selection"][0].startswith(
        "m_erm: at selection, on 6 validation images")


def test_constant_scored_predictions_say_split_and_threshold():
    summary = build_summary(_metrics({"m_erm": _entry(block=ONE_CLASS)}), None)
    verdict = summary["answers"][0]["verdict"]
    assert verdict == ("is a constant predictor (m_erm: all 11 test predictions one class at threshold 0.59), so it "
                       "reads nothing in the image")
    assert _row(summary)["algorithm"] == "erm (constant!)"


def test_training_sites_only_at_a_selected_checkpoint():
    summary = build_summary(_metrics({"m_erm": _entry()}), None)
    assert _row(summary)["training sites (val)"] == "not measured (no checkpoint selected)"
    sentence = summary["answers"][0]["sentence"]
    assert "55.6%" not in sentence and "validation accuracy is not measured (no checkpoint selected)" in sentence
    selected = build_summary(_metrics({"m_erm": _entry(selected=True, val_at_step=0.8)}), None)
    assert _row(selected)["training sites (val)"] == "80.0%"
    assert "80.0% on the training hospitals' validation images at the selected checkpoint" in \
        selected["answers"][0]["sentence"]
    logged_none = _entry(selected=True)
    logged_none["not_measured"] = {"val_acc_at_step": "the run logged no val_acc at step 12"}
    row = _row(build_summary(_metrics({"m_erm": logged_none}), None))
    assert row["training sites (val)"] == "not measured (the run logged no val_acc at step 12)"


def test_seeds_column_counts_seeds_as_the_sentence_does():
    summary = build_summary(_metrics({"m_erm": _entry(seed=0)}), None)
    assert _row(summary)["seeds"] == "1" and ", 1 seed:" in summary["answers"][0]["sentence"]
    three = build_summary(_metrics({f"m{s}": _entry(seed=s) for s in (0, 1, 2)}), None)
    assert _row(three)["seeds"] == "3" and ", 3 seeds:" in three["answers"][0]["sentence"]
    shared = build_summary(_metrics({"a": _entry(seed=0), "b": _entry(seed=0)}), None)
    assert _row(shared)["seeds"] == "1 (2 runs)" and ", 2 runs (1 seed):" in shared["answers"][0]["sentence"]


def test_a_non_test_split_is_named_in_the_headline_columns():
    summary = build_summary(_metrics({"m_erm": _entry()}, split="ood_val"), None)
    columns = summary["headline"].columns
    assert "ood_val split site" in columns and "test site" not in columns and "test AUROC" not in columns
    assert "the ood_val split" in summary["headline"].caption


def test_evaluation_aggregate_table_counts_seeds_too():
    from pipeline.report.site_metrics import aggregate_table

    metrics = {"aggregates": {"erm|training_domain": {"algorithm": "erm", "selection_rule": "training_domain",
                                                      "n_runs": 2, "seeds": [0, 0], "not_measured": {}}}}
    row = aggregate_table(metrics).rows[0]
    assert (row[2].text, row[3].text) == ("2", "1") and row[3].title == "seed values: 0"


def test_an_older_metrics_json_reason_is_reworded_not_called_constant():
    entry = _entry()
    entry["selection"] = {"rule": "training_domain", "step": None, "selected": False, "constant_predictor": True,
                          "reason": "no checkpoint selected: every one of the 3 evaluations predicted one class on "
                                    "its val selection set (constant predictor); model.pt holds the final weights "
                                    "(step 12)"}
    entry["constant_predictor"] = True  # the older evaluate or-ed train's check into it; constant_on_split is false
    verdict = build_summary(_metrics({"m_erm": entry}), None)["answers"][0]["verdict"]
    assert verdict.startswith("has no checkpoint selected (m_erm: at selection, on its val selection set at "
                              "threshold 0.5 (train's arg-max), every prediction was one class; model.pt holds the "
                              "final weights (step 12))")
    assert "constant predictor" not in verdict
