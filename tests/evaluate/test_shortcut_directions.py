import json

import numpy as np
import pandas as pd
import pytest

from pipeline.evaluate.scoring import GroupScorer, score_frame
from pipeline.manifest import read_manifest
from pipeline.protocol.metrics import is_constant, majority_accuracy
from pipeline.protocol.shortcuts import (
    conflict_aligned,
    estimate_direction,
    estimate_directions,
    labelled_mask,
    shortcut_attributes,
)
from tests.helpers.ingest_outputs import ingest_summary


def _train(view_values, labels):
    return pd.DataFrame({"split": "train", "view": view_values, "label": pd.array(labels, dtype="Int64")})


def test_direction_is_estimated_on_train_labelled_rows_and_unknown_is_neither():
    # overall train prevalence 4/8 = 0.5; AP 3/4 -> positive; PA 1/3 -> negative; unknown and unlabelled ignored
    train = _train(["AP", "AP", "AP", "AP", "PA", "PA", "PA", "unknown", "LL"],
                   [1, 1, 1, 0, 1, 0, 0, 0, None])
    direction = estimate_direction(train, "view")
    assert direction.positive_associated == ("AP",)
    assert direction.negative_associated == ("PA",)  # LL's only row is unlabelled: no direction
    assert direction.train_prevalence == pytest.approx(0.5) and direction.n_train == 8

    test = pd.DataFrame({"view": ["AP", "AP", "PA", "PA", "unknown", "LL", None, "AP"],
                         "label": pd.array([1, 0, 1, 0, 1, 1, 0, None], dtype="Int64")})
    conflict, aligned = conflict_aligned(test, direction)
    assert conflict.tolist() == [False, True, True, False, False, False, False, False]
    assert aligned.tolist() == [True, False, False, True, False, False, False, False]


def test_direction_follows_training_not_the_evaluated_split():
    # in training PA is the COVID-associated value: the reverse of the usual AP shortcut
    direction = estimate_direction(_train(["PA", "PA", "AP", "AP"], [1, 1, 0, 0]), "view")
    assert direction.positive_associated == ("PA",) and direction.negative_associated == ("AP",)
    test = pd.DataFrame({"view": ["AP"], "label": pd.array([1], dtype="Int64")})
    assert conflict_aligned(test, direction)[0].tolist() == [True]


def test_tiny_cohort_position_direction_reproduces_the_old_definition(eval_ingest):
    frame = read_manifest(eval_ingest)
    direction = estimate_directions(frame, ["position"])["position"]
    assert direction.positive_associated == ("supine",) and direction.negative_associated == ("erect",)
    label = frame["label"].to_numpy().astype(int)
    position = frame["position"].astype(str).to_numpy()
    old_conflict = ((label == 1) & (position == "erect")) | ((label == 0) & (position == "supine"))
    old_aligned = ((label == 1) & (position == "supine")) | ((label == 0) & (position == "erect"))
    conflict, aligned = conflict_aligned(frame, direction)
    assert conflict.tolist() == old_conflict.tolist() and aligned.tolist() == old_aligned.tolist()


def test_shortcut_attributes_read_summary_and_note_missing_columns(tmp_path):
    frame = pd.DataFrame({"position": ["erect"], "view": ["PA"], "label": [1]})
    attributes, notes = shortcut_attributes(tmp_path, frame)
    assert attributes == ["position", "view"] and any("default" in n for n in notes)
    (tmp_path / "summary.json").write_text(json.dumps(ingest_summary(shortcut_attributes=["view", "scanner"])))
    attributes, notes = shortcut_attributes(tmp_path, frame)
    assert attributes == ["view"] and any("scanner" in n for n in notes)


def test_labelled_mask_handles_int64_and_nullable_labels():
    assert labelled_mask(pd.DataFrame({"label": [0, 1]})).tolist() == [True, True]
    assert labelled_mask(pd.DataFrame({"label": pd.array([0, None, 1], dtype="Int64")})).tolist() == [True, False, True]


def test_majority_accuracy_and_constant_predictor_per_group():
    assert majority_accuracy(np.array([1, 1, 1, 0])) == 0.75
    assert np.isnan(majority_accuracy(np.array([], dtype=int)))
    assert is_constant(np.array([True, True])) and is_constant(np.array([False]))
    assert not is_constant(np.array([True, False])) and not is_constant(np.array([], dtype=bool))
    frame = pd.DataFrame({"site": ["a"] * 4 + ["b"] * 4, "position": ["erect", "supine"] * 4,
                          "label": [1, 1, 1, 0, 1, 0, 1, 0]})
    prob = np.array([0.9, 0.8, 0.7, 0.6, 0.9, 0.1, 0.8, 0.2])  # site a: everything positive
    directions = estimate_directions(frame.assign(split="train"), ["position"])
    out = score_frame(frame, prob, GroupScorer(threshold=0.5, selection_rule="r", split="test", n_bootstrap=20,
                                               directions=directions))
    site_a, site_b = out["per_site"]["a"], out["per_site"]["b"]
    assert site_a["constant_predictor"] is True and site_a["accuracy"] == site_a["majority_accuracy"] == 0.75
    assert site_b["constant_predictor"] is False and site_b["majority_accuracy"] == 0.5
    assert (site_a["n"], site_a["n_pos"], site_a["n_neg"]) == (4, 3, 1)
    shortcut = site_a["shortcuts"]["position"]
    assert shortcut["n_conflict"] + shortcut["n_aligned"] + shortcut["n_unknown"] == 4
    assert site_a["conflict_accuracy"] == shortcut["conflict_accuracy"]


def test_score_frame_refuses_unlabelled_rows():
    from pipeline.errors import DataError

    frame = pd.DataFrame({"site": ["a", "a"], "position": ["erect", "supine"],
                          "label": pd.array([1, None], dtype="Int64")})
    with pytest.raises(DataError, match="unlabelled"):
        score_frame(frame, np.array([0.2, 0.8]), GroupScorer(threshold=0.5, selection_rule="r", split="test"))
