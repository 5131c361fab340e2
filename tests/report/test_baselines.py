"""Trivial baselines beside every accuracy: the always-majority rate, constant predictors, sample sizes."""

import pandas as pd
import pytest

from pipeline.artefacts.metrics import MetricsFile
from pipeline.report.answers import oracle_notes
from pipeline.report.baselines import class_counts, constant_predictor, half_width, majority_accuracy
from pipeline.report.headline import headline
from pipeline.report.shortcut_audit import interventions_table
from pipeline.report.site_metrics import majority_line, sample_size_warnings, site_table
from tests.helpers.stage_outputs import group_scores, metadata_baseline, metrics_file, metrics_json, model_entry


def test_majority_and_class_counts_from_confusion_matrix_when_stage_wrote_none():
    block = {"confusion_matrix": [[1, 1], [3, 15]]}  # tn fp / fn tp: 18 positives, 2 negatives
    assert class_counts(block) == (18, 2)
    assert majority_accuracy(block) == pytest.approx(0.9)
    assert majority_accuracy({"majority_accuracy": 0.7, "confusion_matrix": [[1, 1], [3, 15]]}) == 0.7
    assert majority_accuracy({}) is None


def test_constant_predictor_from_confusion_matrix_and_flag():
    assert constant_predictor({"confusion_matrix": [[0, 4], [0, 6]]}) is True  # every prediction positive
    assert constant_predictor({"confusion_matrix": [[3, 1], [2, 4]]}) is False
    assert constant_predictor({"constant_predictor": False, "confusion_matrix": [[0, 4], [0, 6]]}) is False
    assert constant_predictor({}) is None


def test_half_width_shrinks_with_n_and_is_never_zero():
    assert half_width(0.5, 100) == pytest.approx(0.098, abs=1e-3)
    assert half_width(1.0, 10) == half_width(0.5, 10) > half_width(0.5, 1000)
    assert half_width(0.5, 0) is None


def _entry(name, algorithm, accuracy, matrix, rule="training_domain", n=None):
    """A model scored at threshold 0.4 on one site, its counts and constant flag from the confusion matrix."""
    block = group_scores(accuracy=accuracy, confusion_matrix=matrix, n=n)
    return model_entry(name, algorithm=algorithm, selection_rule=rule, threshold=0.4, per_site={"harbour": block})


def _metrics(*entries):
    return metrics_file({e["name"]: e for e in entries})


def test_site_table_flags_constant_and_below_majority_and_shows_the_majority_rate():
    metrics = _metrics(_entry("a", "erm", 0.92, [[0, 2], [0, 23]]),       # all predicted positive, 23 of 25 positive
                       _entry("b", "fishr", 0.60, [[1, 1], [9, 14]]))     # below the 92% majority rate
    rows = {r[0].text.split(" ")[0]: [c.text for c in r] for r in site_table(metrics).rows}
    assert rows["a"][5] == "92.0% (constant predictor)" and rows["a"][6] == "92.0%"
    assert rows["b"][5] == "60.0% (≤ majority)" and rows["b"][4] == "0.40"
    assert rows["b"][3] == "25 (23 COVID-19 / 2 no finding)"


def test_majority_line_is_the_majority_of_the_data_shown_not_fifty_percent():
    metrics = _metrics(_entry("a", "erm", 0.5, [[2, 0], [8, 0]]))
    cohort = pd.DataFrame({
        "site": ["north"] * 4 + ["harbour"] * 10, "split": ["val"] * 4 + ["test"] * 10,
        "position": ["erect", "erect", "supine", "supine"] + ["erect"] * 7 + ["supine"] * 3,
        "label": [0, 0, 0, 1] + [1] * 6 + [0] + [0, 0, 1]})
    val, site, conflicting = majority_line(metrics, ["harbour"], cohort)
    assert val == pytest.approx(0.75)  # 3 of 4 validation images are no finding
    assert site == pytest.approx(0.8)  # from the confusion matrix: 8 of 10 positive
    # conflicting = COVID and erect (6) or no finding and supine (2): 6 of 8
    assert conflicting == pytest.approx(0.75)
    assert majority_line(metrics, ["harbour"], None) == [None, pytest.approx(0.8), None]


def test_intervention_variant_at_the_class_prior_is_flagged_constant():
    from pipeline.artefacts.audit import AuditFile
    from pipeline.artefacts.metrics import MetricsFile
    from tests.helpers.audit_outputs import audit_json, audit_model, interventions

    overall = interventions(n=20, accuracy=0.7, lung_only_accuracy=0.6, lung_only_majority_accuracy=0.6,
                            lung_only_constant_predictor=True, lungs_removed_accuracy=0.55,
                            lungs_removed_majority_accuracy=0.6, lungs_removed_constant_predictor=False)
    audit_models = AuditFile.from_dict(audit_json({"a": audit_model("a", overall=overall)})).models
    metrics = MetricsFile.from_dict(metrics_json({"a": model_entry(
        "a", overall=group_scores(n=20, n_pos=12, accuracy=0.75))}))
    texts = [c.text for c in interventions_table(audit_models, metrics).rows[0]]
    assert texts[3] == "75.0%"  # evaluate's accuracy, not the audit's 70%
    assert texts[4] == "60.0%"
    assert texts[6] == "60.0% (constant predictor)" and texts[7] == "55.0% (≤ majority 60.0%)"


def test_small_test_site_warns_when_interval_wider_than_gap():
    lines = sample_size_warnings(_metrics(_entry("a", "erm", 0.6, [[3, 2], [2, 3]]),
                                          _entry("b", "fishr", 0.7, [[4, 1], [2, 3]])))
    assert len(lines) == 1 and "test site harbour: n=10" in lines[0] and "cannot separate" in lines[0]
    large = _metrics(_entry("a", "erm", 0.6, [[3, 2], [2, 3]], n=100_000),
                     _entry("b", "fishr", 0.7, [[4, 1], [2, 3]], n=100_000))
    assert sample_size_warnings(large) == []


def test_oracle_row_lower_than_headline_is_explained():
    metrics = metrics_json({"a": _entry("a", "erm", 0.7, [[3, 2], [1, 4]]),
                            "a@oracle": _entry("a@oracle", "erm", 0.6, [[3, 2], [2, 3]], rule="oracle")})
    notes = oracle_notes(headline(MetricsFile.from_dict(metrics), None))
    assert len(notes) == 1 and "reads lower than the headline row" in notes[0] and "argmax" in notes[0]
    metrics["models"]["a@oracle"]["mean_site"]["accuracy"] = 0.8
    assert oracle_notes(headline(MetricsFile.from_dict(metrics), None)) == []


def test_accuracy_figure_caption_names_each_line_by_the_style_it_was_drawn_in(tmp_path):
    from pipeline.report.site_metrics import _headline_figure

    metrics = _metrics(_entry("a", "erm", 0.5, [[2, 0], [8, 0]]))
    # no metadata baseline: the majority line is the first reference series, drawn dashed (not dotted brown)
    caption = _headline_figure(metrics, tmp_path)["caption"]
    assert "dashed: the accuracy of always predicting" in caption and "metadata-only" not in caption
    entries = {"a": _entry("a", "erm", 0.5, [[2, 0], [8, 0]])}
    baseline = metadata_baseline({"harbour": group_scores(accuracy=0.6, conflict_accuracy=0.5)})
    caption = _headline_figure(metrics_file(entries, metadata_baseline=baseline), tmp_path)["caption"]
    assert "dashed: metadata-only baseline; dotted brown: the accuracy of always predicting" in caption
    assert (tmp_path / "fig_accuracy_per_site.png").is_file()


def test_sample_size_gap_is_between_seed_means_not_the_last_seed():
    """New-user trial 4, F-B: with two seeds per algorithm the warning named the last seeds' 8.0-point gap; the seed
    means (what the aggregate table shows) are 1.0 point apart: erm (0.60 + 0.70) / 2, fishr (0.66 + 0.62) / 2."""
    def seeded(name, algorithm, seed, accuracy, val):
        block = group_scores(accuracy=accuracy, confusion_matrix=[[3, 2], [2, 3]])
        return model_entry(name, algorithm=algorithm, seed=seed, per_site={"harbour": block}, val_acc_at_step=val)

    metrics = _metrics(seeded("erm-s0", "erm", 0, 0.60, 0.80), seeded("erm-s1", "erm", 1, 0.70, 0.84),
                       seeded("fishr-s0", "fishr", 0, 0.66, 0.83), seeded("fishr-s1", "fishr", 1, 0.62, 0.79),
                       seeded("erm-s1@oracle", "erm", 1, 0.99, 0.99))  # another rule's checkpoint: not compared
    cohort = pd.DataFrame({"split": ["val"] * 40})
    site, val = sample_size_warnings(metrics, cohort)
    assert "test site harbour: n=10" in site and "the 1.0-point gap between erm and fishr" in site
    assert "validation set" in val and "n=40" in val and "the 1.0-point gap between erm and fishr" in val
