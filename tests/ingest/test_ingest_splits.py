"""Splits: patient-level, held-out sites whole, duplicates never straddling, stratified and seeded."""

import numpy as np
import pandas as pd

from pipeline.ingest.config import SplitConfig
from pipeline.ingest.splits import assign_splits


def _frame(n_patients=200, images_per_patient=3, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        site = ["a", "b", "c", "test", "oodv"][p % 5]
        label = int(rng.random() < 0.3)
        for i in range(images_per_patient):
            rows.append({"site": site, "domain": site, "label": label, "patient_key": f"p{p}",
                         "pixel_sha256": f"h{p}_{i}"})
    return pd.DataFrame(rows)


CONFIG = SplitConfig(test_sites=["test"], ood_val_sites=["oodv"], holdout=0.2, seed=1)


def test_assign_splits_patients_never_in_two_splits_and_heldout_sites_whole():
    frame = _frame()
    result = assign_splits(frame, CONFIG)
    frame["split"] = result.split
    assert frame.groupby("patient_key")["split"].nunique().max() == 1
    assert set(frame.loc[frame.site == "test", "split"]) == {"test"}
    assert set(frame.loc[frame.site == "oodv", "split"]) == {"ood_val"}
    assert set(frame.loc[frame.site.isin(["a", "b", "c"]), "split"]) == {"train", "val"}
    assert not result.dropped


def test_assign_splits_val_share_stratified_by_domain_and_label():
    frame = _frame(n_patients=1000, images_per_patient=1)
    frame["split"] = assign_splits(frame, CONFIG).split
    training = frame[frame.site.isin(["a", "b", "c"])]
    for (_, _), group in training.groupby(["domain", "label"]):
        assert abs((group["split"] == "val").mean() - 0.2) <= 1 / len(group) + 1e-9


def test_assign_splits_same_seed_same_split_other_seed_differs():
    frame = _frame()
    first = assign_splits(frame, CONFIG).split
    again = assign_splits(frame.sample(frac=1.0, random_state=3).sort_index(), CONFIG).split
    other = assign_splits(frame, CONFIG.model_copy(update={"seed": 2})).split
    assert first.equals(again) and not first.equals(other)


def test_assign_splits_other_patient_salt_same_split():
    frame = _frame()
    first = assign_splits(frame, CONFIG).split
    resalted = frame.assign(patient_key="x" + frame["patient_key"].str[::-1])  # what a new salt does to the keys
    shuffled = resalted.sample(frac=1.0, random_state=5)
    assert first.equals(assign_splits(shuffled, CONFIG).split.sort_index())


def test_assign_splits_duplicate_pixels_under_two_patients_share_a_split():
    frame = _frame(n_patients=100, images_per_patient=1)
    train_rows = frame.index[frame.site == "a"][:10]
    for a, b in zip(train_rows[::2], train_rows[1::2], strict=True):  # the same image filed under two patient IDs
        frame.loc[b, "pixel_sha256"] = frame.loc[a, "pixel_sha256"]
    result = assign_splits(frame, CONFIG.model_copy(update={"holdout": 0.5}))
    for a, b in zip(train_rows[::2], train_rows[1::2], strict=True):
        assert result.split[a] == result.split[b]
        assert result.duplicate_group[a] != "" and result.duplicate_group[a] == result.duplicate_group[b]
    assert (result.duplicate_group != "").sum() == 10


def test_assign_splits_copy_of_a_test_image_in_a_training_site_is_dropped():
    frame = _frame(n_patients=10, images_per_patient=1)
    test_row = frame.index[frame.site == "test"][0]
    train_row = frame.index[frame.site == "a"][0]
    frame.loc[train_row, "pixel_sha256"] = frame.loc[test_row, "pixel_sha256"]
    result = assign_splits(frame, CONFIG)
    assert train_row in result.dropped and "test site" in result.dropped[train_row]
    assert result.split[test_row] == "test"
