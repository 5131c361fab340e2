"""Each selection rule names itself, scores its own history key and refuses its own split's constant predictor."""

from types import SimpleNamespace

import pytest

from pipeline.errors import ConfigError
from pipeline.protocol.selection import (
    ORACLE,
    RULE_NAMES,
    RULES,
    UPPER_BOUND_RULES,
    get_rule,
    is_upper_bound,
    rule_label,
    rule_order,
)
from pipeline.train.config import TrainConfig
from pipeline.train.selection import SelectionTracker

# one evaluation record with a distinct value per history key: a rule reading another rule's key fails
RECORD = {"val_acc": 0.61, "holdout_acc": 0.62, "ood_val_acc": 0.63, "test_acc": 0.64}
EXPECTED = {"training_domain": (0.61, "val"), "leave_one_domain_out": (0.62, "holdout"),
            "ood_validation": (0.63, "ood_val"), "oracle": (0.64, "test")}


def test_rules_in_table_order():
    assert RULE_NAMES == ("training_domain", "leave_one_domain_out", "ood_validation", "oracle")
    assert [rule_order(name) for name in RULE_NAMES] == [0, 1, 2, 3]
    assert rule_order("something else") == 4 and rule_order(None) == 4


@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_rule_scores_its_own_key(name):
    score, split = EXPECTED[name]
    assert get_rule(name).score(RECORD) == (score, False)
    assert get_rule(name).split == split


@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_rule_is_constant_only_on_its_own_split(name):
    split = EXPECTED[name][1]
    for other in RULES.values():
        record = {**RECORD, "predicts_constant": {other.split: True}}
        assert get_rule(name).score(record)[1] is (other.split == split)


def test_tracker_picks_each_rules_best_step_and_skips_its_constant_checkpoints():
    tracker = SelectionTracker(list(RULE_NAMES))
    tracker.observe(1, {"val_acc": 0.9, "holdout_acc": 0.1, "ood_val_acc": 0.5, "test_acc": 0.2})
    tracker.observe(2, {"val_acc": 0.5, "holdout_acc": 0.8, "ood_val_acc": 0.9, "test_acc": 0.99,
                        "predicts_constant": {"test": True}})
    tracker.observe(3, {"val_acc": 0.1, "holdout_acc": 0.2, "ood_val_acc": 0.6, "test_acc": 0.7})
    summary = tracker.summary()
    assert {name: summary[name]["step"] for name in RULE_NAMES} == {
        "training_domain": 1, "leave_one_domain_out": 2, "ood_validation": 2, "oracle": 3}
    assert summary["oracle"]["constant_evaluations_skipped"] == 1
    assert summary["oracle"]["label"] == ORACLE.note and "label" not in summary["training_domain"]


def test_only_the_oracle_is_an_upper_bound_and_says_so():
    assert UPPER_BOUND_RULES == ("oracle",)
    assert [is_upper_bound(name) for name in RULE_NAMES] == [False, False, False, True]
    assert is_upper_bound(None) is False and is_upper_bound("nonsense") is False
    assert ORACLE.note == "oracle: test-domain accuracy, an upper bound only, not a valid model selection"


def test_labels_in_sentences_and_tables():
    assert [rule_label(name) for name in RULE_NAMES] == [
        "training-domain validation", "leave-one-domain-out", "OOD validation hospital",
        "oracle (test hospital: upper bound only)"]
    assert [rule_label(name, short=True) for name in RULE_NAMES] == [
        "training-domain val.", "leave-one-domain-out", "OOD val. hospital", "oracle (upper bound)"]
    assert rule_label(None) == "unstated" and rule_label("custom") == "custom"


def test_unknown_rule_error_lists_the_valid_names():
    with pytest.raises(ConfigError, match="'best_of_all' is unknown; valid rules: training_domain, "
                                          "leave_one_domain_out, ood_validation, oracle"):
        get_rule("best_of_all")


def test_train_config_accepts_exactly_the_registry():
    assert TrainConfig(selection="ood_validation").selection == "ood_validation"
    with pytest.raises(ValueError, match="'training_domain', 'leave_one_domain_out', 'ood_validation' or 'oracle'"):
        TrainConfig(selection="best_of_all")


def test_a_run_tracks_the_rules_whose_split_it_has():
    from pipeline.train.loop import _rules_for

    data = SimpleNamespace(val_sets=[object()], holdout=None, ood_val=object(), test=None)
    assert _rules_for(data) == ["training_domain", "ood_validation"]
    data = SimpleNamespace(val_sets=[], holdout=object(), ood_val=None, test=object())
    assert _rules_for(data) == ["leave_one_domain_out", "oracle"]


def test_the_typed_selection_files_have_one_field_per_rule():
    # selection.json's models spell the rules as fields: a rule added or renamed here must appear there too
    from pipeline.artefacts.selection import SelectionFile, SweepSelectionFile

    assert tuple(name for name in SelectionFile.model_fields if name in RULES) == RULE_NAMES
    assert set(SelectionFile.model_fields) >= set(RULE_NAMES) and set(SweepSelectionFile.model_fields) >= set(RULES)
    assert SelectionFile.OMIT_WHEN_NONE == frozenset(RULE_NAMES)


def test_tracker_refuses_an_unknown_rule_up_front():
    with pytest.raises(ConfigError, match="'val_loss' is unknown; valid rules: training_domain"):
        SelectionTracker(["training_domain", "val_loss"])
