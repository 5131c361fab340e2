"""Finding 3 (issue 11): the headline conflict/aligned numbers use an attribute the data can measure, named next to
them; an attribute with one known level (position erect/unknown) is never the headline."""

import numpy as np
import pandas as pd
import torch

from pipeline.data import CacheDataset
from pipeline.evaluate.samples import separation_warnings, split_warnings
from pipeline.evaluate.scoring import GroupScorer, score_frame, shortcut_block
from pipeline.protocol.metrics import Accuracy
from pipeline.protocol.shortcuts import (
    conflict_aligned,
    direction_problem,
    estimate_directions,
    headline_attribute,
    skipped_attribute_warning,
)
from pipeline.train.monitor import make_eval_set


def _frame(n: int = 24) -> pd.DataFrame:
    """position is erect or unknown only (AP images without a keyword); view carries the shortcut: AP is mostly
    positive in training. Rows alternate train/test."""
    label = np.arange(n) % 2
    rng = np.random.default_rng(0)
    agree = rng.random(n) < 0.8
    view = np.where(agree == (label == 1), "AP", "PA")
    position = np.where(np.arange(n) % 3 == 0, "unknown", "erect")
    return pd.DataFrame({"site": np.where(np.arange(n) % 8 < 4, "a", "b"), "position": position, "view": view,
                         "label": label, "split": np.where((np.arange(n) // 2) % 2 == 0, "train", "test")})


def test_one_known_level_is_not_measurable_and_the_next_attribute_is_the_headline():
    frame = _frame(48)
    directions = estimate_directions(frame, ["position", "view"])
    assert "1 known level" in direction_problem(directions["position"])
    assert direction_problem(directions["view"]) is None
    assert headline_attribute(directions) == ("view", None)
    # position's masks are empty: erect negatives are not "conflicting" because erect is the only known level
    conflict, aligned = conflict_aligned(frame, directions["position"])
    assert not conflict.any() and not aligned.any()
    warning = skipped_attribute_warning(directions)
    assert "'view'" in warning and "position" in warning and "1 known level" in warning


def test_group_blocks_name_the_attribute_and_its_counts():
    frame = _frame(48)
    directions = estimate_directions(frame, ["position", "view"])
    test = frame[frame["split"] == "test"].reset_index(drop=True)
    prob = np.where(test["view"] == "AP", 0.8, 0.2)  # a model reading the view shortcut only
    scorer = GroupScorer(threshold=0.5, selection_rule="training_domain", split="test", n_bootstrap=0,
                         directions=directions)
    out = score_frame(test, prob, scorer)
    conflict, aligned = conflict_aligned(test, directions["view"])
    for block in (out["overall"], *out["per_site"].values(), *out["per_group"].values()):
        assert block["conflict_attribute"] == "view"
        assert block["n_conflict"] + block["n_aligned"] + block["n_unknown"] == block["n"]
    overall = out["overall"]
    assert (overall["n_conflict"], overall["n_aligned"], overall["n_unknown"]) == (
        int(conflict.sum()), int(aligned.sum()), 0)
    assert overall["conflict_accuracy"] == 0.0 and overall["aligned_accuracy"] == 1.0  # the shortcut reader


def test_no_measurable_attribute_gives_null_with_each_attribute_and_why():
    frame = _frame(24).assign(view="PA")  # view: one level too
    directions = estimate_directions(frame, ["position", "view"])
    scorer = GroupScorer(threshold=0.5, selection_rule="training_domain", split="test", n_bootstrap=0,
                         directions=directions)
    test = frame[frame["split"] == "test"].reset_index(drop=True)
    block = score_frame(test, np.full(len(test), 0.7), scorer)["overall"]
    assert block["conflict_attribute"] is None and block["n_conflict"] is None and block["n_unknown"] is None
    assert np.isnan(block["conflict_accuracy"]) and np.isnan(block["aligned_accuracy"])
    reason = block["not_measured"]["conflict_accuracy"]
    assert "position: 1 known level" in reason and "view: 1 known level" in reason


def test_empty_group_reason_reads_shortcut_aligned_not_aligneding():
    y = np.array([1, 0])
    none = np.zeros(2, dtype=bool)
    block = shortcut_block(accuracy=Accuracy(), y=y, prob=np.array([0.9, 0.1]), threshold=0.5,
                           conflict=np.array([True, True]), aligned=none)
    assert block["not_measured"]["aligned_accuracy"] == "no shortcut-aligned images in this group"


def test_training_time_conflict_uses_the_same_definition(tmp_path):
    from pipeline.cache import ImageCache, write_cache_info

    frame = _frame(48)
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    arrays = {"images": np.zeros((len(frame), 8, 8), dtype=np.float16),
              "lung_masks": np.zeros((len(frame), 8, 8), dtype=np.uint8),
              "shortcut_masks": np.zeros((len(frame), 8, 8), dtype=np.uint8)}
    for name, array in arrays.items():
        np.save(cache_dir / f"{name}.npy", array)
    write_cache_info(cache_dir, {"n": len(frame), "size": 8, "dtype": "float16", "arrays": sorted(arrays)})
    (tmp_path / "stage.json").write_text("{}")  # a finished ingest (ImageCache.open refuses one without)
    frame = frame.assign(cache_index=np.arange(len(frame)))
    directions = estimate_directions(frame, ["position", "view"])
    test = frame[frame["split"] == "test"]
    eval_set = make_eval_set("test", CacheDataset(ImageCache.open(tmp_path), test), test, directions["view"])
    assert eval_set.conflict_attribute == "view"
    assert eval_set.conflict.tolist() == conflict_aligned(test, directions["view"])[0].tolist()
    assert torch.is_tensor(eval_set.dataset[0][0])


def test_warnings_name_the_split_role_not_always_test_site():
    frame = _frame(24)
    evaluated = frame[frame["split"] == "test"].assign(split="ood_val")
    out = split_warnings(manifest=frame.assign(split=np.where(frame["split"] == "test", "ood_val", "train")),
                         split="ood_val", evaluated=evaluated)
    assert any(w.startswith("ood-validation site (ood_val) a is small") for w in out)
    assert not any(w.startswith("test site") for w in out)
    models = {m: {"per_site": {"a": {"auroc": a, "auroc_ci": [0.1, 0.9]}}} for m, a in (("x", 0.6), ("y", 0.62))}
    assert separation_warnings(models, split="ood_val")[0].startswith("ood-validation site (ood_val) a:")


def test_metrics_csv_names_the_conflict_attribute_beside_the_numbers():
    import csv
    import io

    from pipeline.evaluate.table import metrics_csv

    block = {"n": 4, "conflict_accuracy": 0.5, "aligned_accuracy": 1.0, "conflict_attribute": "view",
             "n_conflict": 2, "n_aligned": 1, "n_unknown": 1}
    entry = {"overall": block, "per_site": {"a": block}, "per_group": {}, "selection": {"selected": False}}
    metrics = {"split": "test", "models": {"m": entry}, "metadata_baseline": {"overall": None}}
    rows = list(csv.DictReader(io.StringIO(metrics_csv(metrics))))
    assert [(r["conflict_attribute"], r["n_conflict"], r["n_aligned"], r["n_unknown"], r["selected"]) for r in rows] \
        == [("view", "2", "1", "1", "False")] * 2
