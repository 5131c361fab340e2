import numpy as np
import pandas as pd
import pytest

from pipeline.errors import DataError
from pipeline.manifest import COLUMNS, domain_values, read_manifest, split_rows, validate_manifest, write_manifest


def _frame(n: int = 4) -> pd.DataFrame:
    rows = []
    for i in range(n):
        row = {c: "" for c in COLUMNS}
        row.update(image_id=f"img{i}", patient_key=f"p{i}", site="north" if i % 2 else "east", position="erect",
                   age_group="adult", split="train" if i < n - 1 else "test", label=i % 2, age_years=50.0,
                   cache_index=i, counterfactual_index=-1)
        rows.append(row)
    return pd.DataFrame(rows)


def test_write_then_read_manifest_round_trips(tmp_path):
    frame = _frame()
    write_manifest(frame, tmp_path)
    (tmp_path / "stage.json").write_text("{}")  # a finished ingest (read_manifest refuses one without)
    back = read_manifest(tmp_path)
    assert back["image_id"].tolist() == frame["image_id"].tolist()
    assert back["label"].tolist() == frame["label"].tolist()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda f: f.drop(columns=["site"]), "columns"),
        (lambda f: f.assign(position=["erect", "lying", "erect", "erect"]), "position must be one of"),
        (lambda f: f.assign(label=[0, 1, 2, 0]), "label must be 0 or 1"),
        (lambda f: f.assign(image_id=["a", "a", "b", "c"]), "image_id must be unique"),
        (lambda f: f.assign(patient_key=["p", "q", "r", "p"]), "one split"),
    ],
)
def test_validate_manifest_broken_rule_is_named(change, message):
    with pytest.raises(DataError, match=message):
        validate_manifest(change(_frame()))


def test_split_rows_empty_split_names_the_splits_present():
    with pytest.raises(DataError, match=r"got none for 'ood_val'.*\['test', 'train'\]"):
        split_rows(_frame(), "ood_val", stage="audit", where="somewhere")
    assert len(split_rows(_frame(), "train", stage="audit", where="x")) == 3


def test_domain_values_join_columns_and_unknown_column_is_error():
    frame = _frame()
    assert domain_values(frame, ("site", "position")).tolist()[:2] == ["east|erect", "north|erect"]
    with pytest.raises(DataError, match="hospital"):
        domain_values(frame, ("hospital",))


def test_domain_values_missing_values_read_unknown_and_numbers_as_text():
    frame = pd.DataFrame({"site": ["east", None, np.nan], "age_years": [45.0, np.nan, 7.0]})
    assert domain_values(frame, ("site",)).tolist() == ["east", "unknown", "unknown"]
    assert domain_values(frame, ("site", "age_years")).tolist() == ["east|45.0", "unknown|unknown", "unknown|7.0"]


def test_read_manifest_missing_file_says_run_ingest(tmp_path):
    with pytest.raises(DataError, match="cxr-fishr ingest"):
        read_manifest(tmp_path)
