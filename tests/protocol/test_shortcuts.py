"""The one definition of shortcut-conflicting and aligned images: inverting it (or the label's meaning) fails here."""

import pandas as pd

from pipeline.protocol.shortcuts import ShortcutDirection, conflict_aligned, estimate_direction
from pipeline.report import cohort


def _frame(positions, labels):
    return pd.DataFrame({"position": positions, "label": pd.array(labels, dtype="Int64")})


def test_supine_goes_with_covid_when_supine_images_are_more_often_positive_in_train():
    train = _frame(["supine"] * 4 + ["erect"] * 4, [1, 1, 1, 0, 0, 0, 0, 1])
    direction = estimate_direction(train, "position")
    assert direction.positive_associated == ("supine",) and direction.negative_associated == ("erect",)
    assert direction.value_prevalence == {"erect": 0.25, "supine": 0.75} and direction.train_prevalence == 0.5


def test_conflicting_is_covid_erect_or_no_finding_supine_and_aligned_the_reverse():
    direction = ShortcutDirection("position", ("supine",), ("erect",), 0.5, 8)
    frame = _frame(["erect", "erect", "supine", "supine", "unknown", "erect"], [1, 0, 1, 0, 1, None])
    conflict, aligned = conflict_aligned(frame, direction)
    assert conflict.tolist() == [True, False, False, True, False, False]
    assert aligned.tolist() == [False, True, True, False, False, False]


def test_unmeasurable_direction_marks_nothing():
    direction = ShortcutDirection("position", ("erect",), (), 1.0, 5)
    conflict, aligned = conflict_aligned(_frame(["erect", "erect"], [0, 1]), direction)
    assert not conflict.any() and not aligned.any()


def test_cohort_known_levels_use_the_shortcut_definition_of_unknown():
    rows = pd.DataFrame({"position": ["erect", "Unknown", "NaN", None, "supine", "erect"],
                         "label": pd.array([0, 1, 0, 1, 1, None], dtype="Int64")})
    assert cohort.known_levels(rows, "position") == ["erect", "supine"]
