"""Trial 2, findings 1 and 2: the summary's "constant predictor" rests on the scored predictions only (train's
selection check is worded as what it is), and every headline figure is what its caption says (training sites at the
selected checkpoint only; seeds counted as the sentence counts them; the split named). Small real metrics.json
files as evaluate writes them (tests/helpers/stage_outputs.py)."""

import pytest

from pipeline.errors import DataError
from pipeline.report.answers import build_summary
from tests.helpers.stage_outputs import group_scores, metrics_file, metrics_json, model_entry

FACT = {"rule": "training_domain", "split": "val", "threshold": 0.5, "n": 6, "evaluations": 3,
        "n_not_measured": None,
        "text": "at selection, on 6 validation images of the training hospitals at threshold 0.5, every prediction "
                "was one class (all 3 evaluations)"}
MIXED = {"accuracy": 0.545, "auroc": 0.3, "confusion_matrix": [[0, 1], [4, 6]]}  # 10 of 11 positive
ONE_CLASS = {**MIXED, "accuracy": 0.909, "confusion_matrix": [[0, 1], [0, 10]]}  # every prediction positive
HISTORY = {"last_k": 5, "n_evaluations": 3, "steps": [4, 8, 12], "test_acc": None, "test_conflict_acc": None,
           "ood_val_acc": None, "val_acc": {"mean": 0.5556, "std": 0.157, "min": 0.333, "max": 0.667, "n": 3}}


def _entry(seed=0, *, block=MIXED, selected=False, val_at_step=None, name="m_erm", split="test"):
    select = {"step": 12 if selected else None, "selected": selected, "constant_predictor": not selected,
              "constant_at_selection": None if selected else FACT,
              "reason": "selected at step 12" if selected else
              f"no checkpoint selected: {FACT['text']}; model.pt holds the final weights (step 12)"}
    return model_entry(name, seed=seed, threshold=0.5877, split=split, select=select, history=HISTORY,
                       per_site={"Harbour": group_scores(split=split, **block)}, val_acc_at_step=val_at_step,
                       not_measured={} if val_at_step is not None else {"val_acc_at_step": select["reason"]})


def _metrics(models, split="test"):
    return metrics_file(models, split=split, conflict_attribute="position")


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
    summary = build_summary(_metrics({"m_erm": _entry(split="ood_val")}, split="ood_val"), None)
    columns = summary["headline"].columns
    assert "ood_val split site" in columns and "test site" not in columns and "test AUROC" not in columns
    assert "the ood_val split" in summary["headline"].caption


def test_evaluation_aggregate_table_counts_seeds_too():
    from pipeline.report.site_metrics import aggregate_table

    row = aggregate_table(metrics_file({"a": _entry(seed=0, name="a"), "b": _entry(seed=0, name="b")})).rows[0]
    assert (row[2].text, row[3].text) == ("2", "1") and row[3].title == "seed values: 0"


def test_an_older_metrics_json_is_refused_with_the_field_and_the_fix(tmp_path):
    import json

    from pipeline.report import run

    older = metrics_json({"m_erm": _entry()})
    # before evaluate recorded train's check as its own fact, selection had no constant_at_selection
    del older["models"]["m_erm"]["selection"]["constant_at_selection"]
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps(older))
    with pytest.raises(DataError, match=r"models\.m_erm\.selection\.constant_at_selection: Field required.*"
                                        r"Re-run `cxr-fishr evaluate`"):
        run(evaluate_dir=tmp_path / "eval", audit_dir=None, out=tmp_path / "report")
