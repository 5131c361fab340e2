"""Each verdict threshold at its absolute boundary (pipeline/protocol/thresholds.py): moving any constant changes a
verdict here. tests/report/test_verdict_rules.py checks the wording relative to the constants."""

import re
from pathlib import Path

import pytest

from pipeline.protocol import thresholds
from pipeline.report.verdict import verdict


def _numbers(**means):
    return {k: {"mean": v, "std": None} for k, v in means.items()}


THRESHOLDS = ("CONFLICT_GAP", "FLIP_RATE", "SHORTCUT_OVER_LUNGS", "LUNG_SHARE", "LEARNT", "MIN_GROUP_N")


@pytest.mark.parametrize("name", THRESHOLDS)
def test_docs_report_states_each_threshold_as_defined(name):
    # docs/report.md repeats the values for readers: "`CONFLICT_GAP` (0.20; ..." must follow the definition
    text = (Path(__file__).resolve().parents[2] / "docs" / "report.md").read_text(encoding="utf-8")
    stated = re.findall(rf"`{name}` \(([0-9.]+)", text)
    assert stated and {float(v) for v in stated} == {float(getattr(thresholds, name))}


@pytest.mark.parametrize(("conflict", "shortcut"), [(0.60, True), (0.61, False)])
def test_conflict_gap_of_twenty_points_is_shortcut_evidence(conflict, shortcut):
    numbers = {**_numbers(conflict_accuracy=conflict), "n_conflict": 40, "n_aligned": 40}
    assert verdict(numbers, 0.80)[0].startswith("relies on shortcuts") is shortcut


@pytest.mark.parametrize(("rate", "shortcut"), [(0.30, True), (0.29, False)])
def test_a_thirty_percent_flip_rate_is_shortcut_evidence(rate, shortcut):
    assert verdict(_numbers(counterfactual_flip_rate=rate), None)[0].startswith("relies on shortcuts") is shortcut


@pytest.mark.parametrize(("shortcuts", "shortcut"), [(0.41, True), (0.40, False)])
def test_shortcut_regions_above_the_lungs_share_are_shortcut_evidence(shortcuts, shortcut):
    text, _ = verdict(_numbers(region_ablation_lungs=0.40, region_ablation_shortcuts=shortcuts), None)
    assert text.startswith("relies on shortcuts") is shortcut


@pytest.mark.parametrize(("share", "lungs"), [(0.50, True), (0.49, False)])
def test_half_the_decision_inside_the_lungs_is_lung_evidence(share, lungs):
    text, _ = verdict(_numbers(region_ablation_lungs=share, region_ablation_shortcuts=0.0), None)
    assert text.startswith("mostly uses lung evidence") is lungs


@pytest.mark.parametrize(("accuracy", "learnt"), [(0.60, True), (0.59, False)])
def test_sixty_percent_on_the_training_hospitals_is_learnt(accuracy, learnt):
    text, _ = verdict(_numbers(training_site_accuracy=accuracy, region_ablation_lungs=0.9,
                               region_ablation_shortcuts=0.05), None)
    assert text.startswith("has not learnt the task") is not learnt


@pytest.mark.parametrize(("n", "evidence"), [(10, True), (9, False)])
def test_ten_images_per_group_make_evidence(n, evidence):
    conflict = {**_numbers(conflict_accuracy=0.0), "n_conflict": 50, "n_aligned": n}
    assert verdict(conflict, 1.0)[0].startswith("relies on shortcuts") is evidence
    flips = {**_numbers(counterfactual_flip_rate=0.9), "n_counterfactual": n}
    assert verdict(flips, None)[0].startswith("relies on shortcuts") is evidence
    ablation = {**_numbers(region_ablation_lungs=0.9, region_ablation_shortcuts=0.0), "n_ablation": n}
    assert verdict(ablation, None)[0].startswith("mostly uses lung evidence") is evidence
