from pipeline.train.selection import ORACLE_LABEL, SelectionTracker, available_rules


def _record(val, *, constant=False, test=None):
    return {"val_acc": val, "ood_val_acc": None, "test_acc": test,
            "predicts_constant": {"val": constant, "ood_val": None, "test": False}}


def test_selection_tracker_constant_predictor_never_selected_even_with_best_score():
    tracker = SelectionTracker(["training_domain"])
    tracker.observe(10, _record(0.6))
    assert tracker.observe(20, _record(0.9, constant=True)) == []
    choice = tracker.summary()["training_domain"]
    assert (choice["step"], choice["score"], choice["constant_predictor"]) == (10, 0.6, False)
    assert choice["constant_evaluations_skipped"] == 1


def test_selection_tracker_all_constant_selects_nothing_and_flags_it():
    tracker = SelectionTracker(["training_domain"])
    for step in (10, 20):
        tracker.observe(step, _record(0.5, constant=True))
    choice = tracker.summary()["training_domain"]
    assert choice["step"] is None and choice["score"] is None and choice["constant_predictor"] is True


def test_selection_tracker_ties_keep_earliest_checkpoint():
    tracker = SelectionTracker(["training_domain"])
    assert tracker.observe(10, _record(0.7)) == ["training_domain"]
    assert tracker.observe(20, _record(0.7)) == []
    assert tracker.summary()["training_domain"]["step"] == 10


def test_selection_oracle_is_labelled_and_uses_test_accuracy():
    tracker = SelectionTracker(["training_domain", "oracle"])
    tracker.observe(10, _record(0.9, test=0.2))
    tracker.observe(20, _record(0.5, test=0.8))
    summary = tracker.summary()
    assert summary["oracle"]["step"] == 20 and summary["oracle"]["label"] == ORACLE_LABEL
    assert summary["training_domain"]["step"] == 10 and "label" not in summary["training_domain"]


def test_selection_state_round_trips():
    tracker = SelectionTracker(["training_domain"])
    tracker.observe(10, _record(0.7))
    other = SelectionTracker(["training_domain"])
    other.load_state_dict(tracker.state_dict())
    assert other.summary() == tracker.summary()


def test_available_rules_follow_present_scores():
    assert available_rules(_record(0.7)) == ["training_domain"]
    assert available_rules({**_record(0.7, test=0.3), "holdout_acc": 0.4}) == [
        "training_domain", "leave_one_domain_out", "oracle"]
