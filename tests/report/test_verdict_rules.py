"""The verdict names its evidence, says "cannot be judged" without any, and each threshold holds at its boundary."""

import pytest

from pipeline.report import verdict as rules
from pipeline.report.answers import verdict


def _numbers(**means):
    return {k: {"mean": v, "std": None} for k, v in means.items()}


def test_verdict_issue_repro_without_any_behavioural_measurement_cannot_be_judged_and_names_what_is_missing():
    text, css = verdict({"conflict_accuracy": {"mean": 0.0}, "training_site_accuracy": {"mean": 0.89}}, None)
    assert text.startswith("cannot be judged") and css == ""
    assert "lung evidence" not in text
    for missing in ("conflict gap", "aligned", "counterfactual flip rate", "region ablation"):
        assert missing in text


def test_verdict_missing_reasons_from_the_stages_are_quoted():
    reasons = {"counterfactual_flip_rate": "the cache has no counterfactual arrays",
               "region_ablation_lungs": "no lung mask for these images"}
    text, _ = verdict(_numbers(training_site_accuracy=0.9), None, reasons=reasons)
    assert "the cache has no counterfactual arrays" in text and "no lung mask for these images" in text


def test_verdict_absent_lung_masks_named_as_the_reason_region_ablation_is_missing():
    text, _ = verdict(_numbers(counterfactual_flip_rate=0.05), None, lung_masks={"provided": 0, "estimated": 0,
                                                                                  "absent": 40})
    assert "lungs cannot be judged" in text and "no lung mask for any image" in text


@pytest.mark.parametrize(("gap", "shortcut"), [(rules.CONFLICT_GAP, True), (rules.CONFLICT_GAP - 0.01, False)])
def test_conflict_gap_boundary(gap, shortcut):
    aligned = 0.9
    numbers = {**_numbers(conflict_accuracy=aligned - gap), "n_conflict": 40, "n_aligned": 40}
    text, css = verdict(numbers, aligned)
    assert text.startswith("relies on shortcuts") is shortcut
    assert (css == "bad") is shortcut


@pytest.mark.parametrize(("rate", "shortcut"), [(rules.FLIP_RATE, True), (rules.FLIP_RATE - 0.01, False)])
def test_flip_rate_boundary(rate, shortcut):
    text, _ = verdict(_numbers(counterfactual_flip_rate=rate), None)
    assert text.startswith("relies on shortcuts") is shortcut
    assert f"flips {100 * rate:.0f}%" in text


@pytest.mark.parametrize(("shortcuts", "shortcut"), [(0.41, True), (0.40, False)])
def test_shortcut_over_lungs_boundary(shortcuts, shortcut):
    lungs = 0.40 / rules.SHORTCUT_OVER_LUNGS
    text, _ = verdict(_numbers(region_ablation_lungs=lungs, region_ablation_shortcuts=shortcuts), None)
    assert text.startswith("relies on shortcuts") is shortcut


@pytest.mark.parametrize(("share", "lungs"), [(rules.LUNG_SHARE, True), (rules.LUNG_SHARE - 0.01, False)])
def test_lung_share_boundary_outside_share_counts_against_lungs(share, lungs):
    text, css = verdict(_numbers(region_ablation_lungs=share, region_ablation_shortcuts=0.0), None)
    assert text.startswith("mostly uses lung evidence") is lungs
    assert (css == "good") is lungs
    if not lungs:
        assert text.startswith("does not mainly use the lungs")


@pytest.mark.parametrize(("accuracy", "learnt"), [(rules.LEARNT, True), (rules.LEARNT - 0.01, False)])
def test_learnt_boundary(accuracy, learnt):
    text, _ = verdict(_numbers(training_site_accuracy=accuracy, region_ablation_lungs=0.9,
                               region_ablation_shortcuts=0.05), None)
    assert text.startswith("has not learnt the task") is not learnt


def test_lung_verdict_names_every_measurement_it_rests_on_and_estimated_masks():
    numbers = {**_numbers(conflict_accuracy=0.8, counterfactual_flip_rate=0.05, region_ablation_lungs=0.7,
                          region_ablation_shortcuts=0.1), "n_conflict": 20, "n_aligned": 30}
    text, css = verdict(numbers, 0.85, lung_masks="estimated")
    assert text.startswith("mostly uses lung evidence") and css == "good"
    assert "gap 5 points" in text and "flips 5%" in text and "70% (estimated) of the decision inside the lungs" in text
    assert "ESTIMATED" in text and "an estimate" in text


def test_model_at_or_below_the_majority_rate_gets_no_lung_credit():
    numbers = _numbers(region_ablation_lungs=0.8, region_ablation_shortcuts=0.1, test_site_accuracy=0.29,
                       test_site_majority_accuracy=0.6)
    text, css = verdict(numbers, None)
    assert text.startswith("does not beat always predicting the majority class") and css == "bad"
    assert "29% vs 60%" in text
    numbers["test_site_accuracy"] = {"mean": 0.61}
    assert verdict(numbers, None)[0].startswith("mostly uses lung evidence")


def test_constant_predictor_verdict_overrides_everything():
    numbers = {**_numbers(region_ablation_lungs=0.9), "constant_predictor": ["erm-s0"]}
    text, css = verdict(numbers, None)
    assert "constant predictor" in text and "erm-s0" in text and css == "bad"


def test_lung_mask_status_reads_counts_and_strings():
    assert rules.lung_mask_status({"provided": 3, "estimated": 2, "absent": 0})[0] == "estimated"
    assert rules.lung_mask_status({"provided": 0, "estimated": 0, "absent": 5})[0] == "absent"
    assert rules.lung_mask_status("manifest")[0] == "provided"
    assert rules.lung_mask_status(None)[0] == "unknown"


@pytest.mark.parametrize(("n", "evidence"), [(rules.MIN_GROUP_N, True), (rules.MIN_GROUP_N - 1, False)])
def test_conflict_gap_needs_min_group_n_images_in_each_group(n, evidence):
    numbers = {**_numbers(conflict_accuracy=0.0, region_ablation_lungs=0.2, region_ablation_shortcuts=0.1),
               "n_conflict": 50, "n_aligned": n, "conflict_attribute": "view"}
    text, _ = verdict(numbers, 1.0)
    assert text.startswith("relies on shortcuts") is evidence
    if evidence:
        assert f"(n={n})" in text and "view-conflicting" in text
    else:
        assert f"too few images (n={n} aligned" in text


def test_issue_repro_one_aligned_image_and_no_lung_measurement_is_no_lung_claim():
    # trial repro: "conflicting images 0% vs aligned 100%" with n_aligned 1 and no lung mask
    numbers = {**_numbers(conflict_accuracy=0.0, training_site_accuracy=1.0), "n_conflict": 16, "n_aligned": 1}
    reasons = {"region_ablation_lungs": "no lung mask for these images"}
    text, _ = verdict(numbers, 1.0, reasons=reasons)
    assert "rather than the lungs" not in text and not text.startswith("relies on shortcuts")
    assert "too few images (n=1 aligned" in text


def test_shortcut_evidence_without_a_lung_measurement_says_lung_reliance_not_measured():
    numbers = {**_numbers(conflict_accuracy=0.1), "n_conflict": 30, "n_aligned": 30}
    text, css = verdict(numbers, 0.9, reasons={"region_ablation_lungs": "no lung mask for these images"})
    assert text.startswith("relies on shortcuts (evidence:") and css == "bad"
    assert "rather than the lungs" not in text
    assert "lung reliance not measured (no lung mask for these images)" in text
    numbers.update(_numbers(region_ablation_lungs=0.3, region_ablation_shortcuts=0.1))
    assert verdict(numbers, 0.9)[0].startswith("relies on shortcuts rather than the lungs")


def test_flip_rate_with_too_few_pairs_is_not_evidence():
    numbers = {**_numbers(counterfactual_flip_rate=0.9), "n_counterfactual": 3}
    text, _ = verdict(numbers, None)
    assert not text.startswith("relies on shortcuts") and "too few images (n=3 pairs" in text


def test_no_checkpoint_selected_is_said_before_any_other_rule():
    numbers = {**_numbers(training_site_accuracy=0.9), "no_checkpoint": ["fishr (every evaluation constant)"]}
    text, css = verdict(numbers, None)
    assert text.startswith("has no checkpoint selected (fishr (every evaluation constant))") and css == "bad"
