"""Issue 11 (a new user's trial): the report never claims what it did not measure. Each test builds small real
stage outputs (a manifest, metrics.json, audit.json, stage.json files) and checks one kind of finding."""

import pandas as pd

from pipeline.report.cohort import counts_table, direction_sentence, factors_table, trained_sites


def _frame(rows):
    """rows: (site, split, position, label or None, count)."""
    out = []
    for site, split, position, label, count in rows:
        out += [{"site": site, "domain": site, "split": split, "position": position, "label": label}] * count
    frame = pd.DataFrame(out)
    frame["label"] = frame["label"].astype("Int64")
    return frame


ONE_LEVEL = [("east", "train", "erect", 0, 10), ("east", "train", "erect", 1, 3), ("east", "train", "unknown", 1, 9),
             ("colb", "test", "erect", 1, 16), ("colb", "test", "erect", 0, 1), ("colb", "test", "unknown", 1, 9)]


def test_position_agreement_with_one_known_level_is_not_measured_and_not_highlighted():
    table, _ = counts_table(_frame(ONE_LEVEL))
    agree = {row[0].text: row[-1] for row in table.rows}
    for site in ("east", "colb"):
        assert agree[site].text == "not measured (position has one known level here (erect); the rest unknown)"
        assert "worst" not in agree[site].css
    assert "%" not in " ".join(c.text for c in agree.values())


def test_position_agreement_is_measured_with_both_levels_labelled():
    frame = _frame([("east", "train", "supine", 1, 8), ("east", "train", "erect", 0, 8),
                    ("east", "train", "erect", 1, 4)])
    agree = counts_table(frame)[0].rows[0][-1]
    assert agree.text == "80.0%" and "worst" in agree.css


def test_factor_association_with_one_known_level_in_a_scope_is_not_measured():
    summary = {"confounding": {"warning_lift": 0.15, "factors": [
        {"factor": "position", "scope": "site=colb", "n": 26, "n_pos": 25, "n_neg": 1, "auroc": 0.65,
         "cramers_v": 0.19, "chi2_p_value": 0.3, "accuracy": 0.9, "chance": 0.9, "lift": 0.4},
        {"factor": "position", "scope": "all", "n": 48, "n_pos": 38, "n_neg": 10, "auroc": 0.7, "lift": 0.05}]}}
    table = factors_table(summary, _frame(ONE_LEVEL))
    for row in table.rows:
        texts = [c.text for c in row[3:]]
        assert all(t.startswith("not measured (position has one known level here (erect)") for t in texts), texts
        assert not any("worst" in c.css for c in row)
    # without the manifest the ingest's numbers are shown as they are
    assert factors_table(summary).rows[0][3].text.startswith("0.65")


def _train_stage(domains, columns=("domain",)):
    return {"stage": "train", "training_domains": list(domains), "config": {"domain_columns": list(columns)}}


def test_roles_come_from_the_training_runs_else_say_ingest_split():
    frame = _frame([("Site One", "train", "erect", None, 2), ("Site Two", "val", "erect", None, 2),
                    ("colb", "test", "erect", 1, 2)])
    roles = lambda trained: {r[0].text: r[1].text for r in counts_table(frame, trained=trained)[0].rows}  # noqa: E731
    unknown = roles(None)
    assert unknown["Site One"] == "ingest split train" and unknown["Site Two"] == "ingest split val"
    assert "training" not in " ".join(unknown.values())
    other = trained_sites(frame, {"train: m_erm": _train_stage(["east", "nord"])})
    assert other is not None and not other.sites
    assert roles(other)["Site One"] == "ingest split train; not trained on"
    assert "No site of this ingest is one of the training hospitals" in direction_sentence(frame, trained=other)
    mine = trained_sites(frame, {"train: m": _train_stage(["Site Two"])})
    assert roles(mine)["Site Two"] == "training" and roles(mine)["Site One"] == "ingest split train; not trained on"
    assert trained_sites(frame, {"train: m": _train_stage(["x"], columns=("manufacturer",))}) is None
