"""Ingest of the synthetic cohort (pipeline.synth) reproduces its truth.csv; counterfactuals land in the cache."""

from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from pipeline.cache import ImageCache
from pipeline.ingest import run
from pipeline.manifest import read_manifest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cohort_ingest(tmp_path_factory):
    from pipeline.synth import run as synth_run

    root = tmp_path_factory.mktemp("synth")
    cohort = synth_run(config=REPO / "configs" / "cohort" / "demo.yaml", out=root / "cohort", n_per_site=8, size=64,
                       counterfactual="position", workers=1, progress=False).out
    result = run(source=cohort / "dicom", out=root / "ingest", metadata=cohort / "labels.csv",
                 config=REPO / "configs" / "ingest" / "synth_demo.yaml", size=32, workers=2, progress=False)
    return Path(cohort), result


def test_ingest_synth_reproduces_truth_for_every_image(cohort_ingest):
    cohort, result = cohort_ingest
    truth = pd.read_csv(cohort / "truth.csv")
    manifest = read_manifest(result.out)
    assert result.summary.n_rejected == 0 and len(manifest) == len(truth)
    merged = truth.merge(manifest, on="image_id", suffixes=("_truth", "_ingest"), validate="one_to_one")
    for column in ("site", "position", "age_group", "label", "view", "sex"):
        assert (merged[f"{column}_truth"].astype(str) == merged[f"{column}_ingest"].astype(str)).all(), column
    expected_split = merged["role_truth" if "role_truth" in merged else "role"].map(
        {"test": {"test"}, "ood_val": {"ood_val"}, "train": {"train", "val"}})
    assert all(s in allowed for s, allowed in zip(merged["split"], expected_split, strict=True))
    assert manifest.groupby("patient_key")["split"].nunique().max() == 1


def test_ingest_synth_counterfactuals_and_masks_in_cache(cohort_ingest):
    _, result = cohort_ingest
    manifest = read_manifest(result.out)
    cache = ImageCache.open(result.out)
    assert cache.has_counterfactuals and (manifest["counterfactual_index"] >= 0).all()
    assert sorted(manifest["counterfactual_index"]) == list(range(len(manifest)))
    cf = cache.get("counterfactual_images")
    for row in manifest.itertuples():
        original, other = cache.images[row.cache_index].astype(float), cf[row.counterfactual_index].astype(float)
        assert not np.array_equal(original, other)  # the other position, rendered
        assert cache.lung_masks[row.cache_index].any() and cache.get("counterfactual_lung_masks")[row.counterfactual_index].any()
    assert cache.get("lesion_masks") is not None and cache.shortcut_masks.max() > 0


def test_ingest_synth_outputs_hold_no_patient_names_or_ids(cohort_ingest):
    cohort, result = cohort_ingest
    secrets = set()
    for path in (cohort / "dicom").rglob("*.dcm"):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        secrets |= {str(ds.PatientName), str(ds.PatientID)}
    assert len(secrets) > 10
    for path in result.out.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            leaked = [s for s in secrets if s.encode() in data]
            assert not leaked, (path, leaked[:3])


def test_ingest_synth_every_site_bright_is_dense_after_decoding(cohort_ingest):
    _, result = cohort_ingest
    manifest = read_manifest(result.out)
    cache = ImageCache.open(result.out)
    for site, group in manifest.groupby("site"):
        lungs, body = [], []
        for index in group["cache_index"]:
            image, mask = cache.images[index].astype(float), cache.lung_masks[index].astype(bool)
            lungs.append(image[mask].mean())
            body.append(image[~mask & (image > 0.05)].mean())  # the mediastinum, bones and soft tissue
        # air-filled lungs are darker than the rest of the body in the displayed image, whatever the site stores
        assert np.mean(lungs) < np.mean(body), site
