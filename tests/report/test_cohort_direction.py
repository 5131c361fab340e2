"""Captions about the cohort are computed from the images: a site whose position-label direction agrees with the
training hospitals is never said to reverse it; ingest's counts reach the page."""

import pandas as pd

from pipeline.artefacts.ingest_summary import IngestSummary
from pipeline.report.cohort import counts_table, direction_sentence, ingest_table, position_gap
from tests.helpers.ingest_outputs import ingest_summary


def _rows(site, split, pairs):
    """pairs: (position, label, count)."""
    rows = []
    for position, label, count in pairs:
        rows += [{"site": site, "split": split, "position": position, "label": label}] * count
    return rows


def _frame(test_pairs):
    rows = _rows("north", "train", [("supine", 1, 8), ("supine", 0, 2), ("erect", 0, 8), ("erect", 1, 2)])
    rows += _rows("harbour", "test", test_pairs)
    frame = pd.DataFrame(rows)
    frame["label"] = frame["label"].astype("Int64")
    return frame


def test_site_agreeing_with_training_direction_gets_no_reverses_caption():
    frame = _frame([("supine", 1, 6), ("supine", 0, 4), ("erect", 0, 7), ("erect", 1, 3)])
    text = direction_sentence(frame)
    assert "reverses" not in text
    assert "at harbour (test (OOD)) the direction agrees with it (+0.30)" in text
    table, _ = counts_table(frame)
    assert "reverses" not in table.note


def test_site_with_opposite_direction_is_said_to_reverse():
    frame = _frame([("supine", 1, 1), ("supine", 0, 9), ("erect", 0, 2), ("erect", 1, 8)])
    assert "at harbour (test (OOD)) the direction reverses it (-0.70)" in direction_sentence(frame)


def test_unknown_labels_are_left_out_of_the_direction_and_counted_in_the_table():
    frame = _frame([("supine", 1, 5), ("erect", 0, 5)])
    frame.loc[frame.index[-1], "label"] = pd.NA
    assert position_gap(frame[frame["site"] == "harbour"]) == 1.0
    table, series = counts_table(frame)
    assert "erect · label unknown" in table.columns and series["erect · label unknown"] == [0, 1]


def test_one_position_only_says_direction_cannot_be_computed():
    frame = _frame([("erect", 0, 5), ("erect", 1, 5)])
    assert "at harbour (test (OOD)) the direction cannot be computed" in direction_sentence(frame)


def test_ingest_table_shows_kept_rejected_unlabelled_unmatched_and_conflicting():
    summary = IngestSummary.from_dict(ingest_summary(
        n_images=40, n_rejected=3, n_unlabelled=5, rejects_by_reason={"not_dicom": 1, "conflicting_metadata_rows": 2},
        metadata_rows_without_image={"n": 7, "examples": ["dir/a.dcm", "b.dcm"]}, conflicting_metadata_rows=2))
    rows = {r[0].text: [c.text for c in r[1:]] for r in ingest_table(summary).rows}
    assert rows["images kept"] == ["40", ""]
    assert rows["files rejected"][0] == "3" and "conflicting_metadata_rows 2" in rows["files rejected"][1]
    assert rows["images without a label (kept, left out of every accuracy)"][0] == "5"
    assert rows["metadata CSV rows without an image"] == ["7", "e.g. a.dcm, b.dcm"]
    assert rows["files with conflicting metadata rows (rejected)"][0] == "2"
    assert ingest_table(None).rows == []
