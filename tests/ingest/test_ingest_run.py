"""End to end on a small hand-made hospital export: good files, bad files, masks, PHI, reuse, atomicity."""

import csv
import hashlib
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pipeline.cache import ImageCache
from pipeline.cli import main
from pipeline.errors import DataError
from pipeline.ingest import IngestConfig, load_ingest_config, run
from pipeline.manifest import read_manifest
from tests.helpers.ingest_factory import FAKE_ID_PREFIX, FAKE_NAME, write_cxr, write_masks

REPO = Path(__file__).resolve().parents[2]
SITES = {
    "north": "Northgate General Hospital", "east": "Eastbrook University Hospital",
    "west": "Westmoor Community Hospital", "valley": "Valley Regional Medical Center", "harbour": "Harbour City Hospital",
}
BAD = {  # file -> expected reject reason
    "north/truncated.dcm": "truncated", "north/ct_scan.dcm": "wrong_modality", "east/notes": "not_dicom",
    "east/blank.dcm": "constant_image", "west/ghost_lungs.png": "orphan_mask", "west/unlisted.dcm": "no_metadata_row",
    "west/mismatch_lungs.png": "mask_shape_mismatch",
}


def _tree_hash(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()


@pytest.fixture(scope="module")
def export(tmp_path_factory):
    """40 chest films over 5 sites (variants of every kind), bad files, masks, labels.csv and the expected fields."""
    root = tmp_path_factory.mktemp("export")
    source, truth, labels = root / "dicom", {}, []
    variants = [{}, {"photometric": "MONOCHROME1"}, {"rle": True}, {"slope": 0.5, "intercept": -1024.0},
                {"bits_stored": 16}, {"window": (2047.5, 4095.0)}, {"frames": 2}, {"bits_stored": 10, "rle": True}]
    for i in range(40):
        site = list(SITES)[i % 5]
        label = (i // 5) % 2
        supine = label == 1
        age = "007Y" if i % 4 == 0 else "052Y"
        path = source / site / f"img{i:03d}.dcm"
        write_cxr(path, seed=i, institution=SITES[site] if i % 10 else f"  {SITES[site].upper()} ",
                  view="AP" if supine else "PA", series="CHEST AP PORTABLE SUPINE" if supine else "CHEST PA ERECT",
                  age=age, sex="F" if i % 3 else "M", patient_id=f"{FAKE_ID_PREFIX}{i // 2 * 5 + i % 5:04d}",
                  blob=bool(label), **variants[i % len(variants)])
        write_masks(path, seed=i)
        labels.append((f"{site}/img{i:03d}.dcm", " covid-19 " if label else "No Finding"))
        truth[f"img{i:03d}"] = {"site": site, "position": "supine" if supine else "erect", "label": label,
                                "age_group": "child" if age == "007Y" else "adult", "sex": "F" if i % 3 else "M"}
    shutil.copy(source / "north" / "img005.dcm", source / "north" / "img005_copy.dcm")  # exact duplicate
    labels.append(("north/img005_copy.dcm", "COVID-19"))
    truth["img005_copy"] = truth["img005"]
    write_cxr(source / "north" / "truncated.dcm", seed=90, truncate=True)
    write_cxr(source / "north" / "ct_scan.dcm", seed=91, modality="CT")
    (source / "east" / "notes").write_text(f"{FAKE_NAME} called about the results\n")
    write_cxr(source / "east" / "blank.dcm", seed=92, slope=0.0)
    write_cxr(source / "west" / "unlisted.dcm", seed=93)
    write_cxr(source / "west" / "mismatch.dcm", seed=94)
    write_masks(source / "west" / "mismatch.dcm", shape=(20, 20))
    labels.append(("west/mismatch.dcm", "No Finding"))
    truth["mismatch"] = {"site": "north",  # the tag, not the folder, names the site
                          "position": "erect", "label": 0, "age_group": "adult", "sex": "M"}
    (source / "west" / "ghost_lungs.png").write_bytes((source / "west" / "img002_lungs.png").read_bytes())
    for name in ("truncated", "ct_scan", "blank"):
        labels.append((f"{list(SITES)[0] if name != 'blank' else 'east'}/{name}.dcm", "No Finding"))
    labels.append(("east/notes", "No Finding"))
    with open(root / "labels.csv", "w", newline="", encoding="latin-1") as handle:
        writer = csv.writer(handle)
        writer.writerow(["  File ", "Finding"])
        writer.writerows(labels)
    return root, source, truth


@pytest.fixture(scope="module")
def ingested(export, tmp_path_factory):
    root, source, truth = export
    before = _tree_hash(source)
    out = tmp_path_factory.mktemp("runs") / "ingest"
    config = load_ingest_config(REPO / "configs" / "ingest" / "synth_demo.yaml", size=32)
    config = config.model_copy(update={"metadata_mapping": config.metadata_mapping.model_copy(
        update={"file_column": "File", "positive_values": ["COVID-19"]})})
    result = run(source=source, out=out, metadata=root / "labels.csv", config=config, workers=2, progress=False)
    return result, config, before


def test_ingest_fields_reproduce_the_export_for_every_image(export, ingested):
    _, _, truth = export
    result, _, _ = ingested
    manifest = read_manifest(result.out).set_index("image_id")
    assert set(manifest.index) == set(truth)
    for image_id, expected in truth.items():
        row = manifest.loc[image_id]
        assert {k: row[k] for k in expected} == expected, image_id
    assert set(manifest.loc[manifest.site == "harbour", "split"]) == {"test"}
    assert set(manifest.loc[manifest.site == "valley", "split"]) == {"ood_val"}
    assert manifest["position_source"].str.startswith("dicom:SeriesDescription").all()


def test_ingest_bad_files_rejected_with_reasons_and_run_goes_on(ingested):
    result, _, _ = ingested
    rejects = pd.read_csv(result.out / "rejects.csv")
    found = dict(zip(rejects["path"], rejects["reason"], strict=True))
    assert found == BAD
    assert result.summary.rejects_by_reason["truncated"] == 1
    manifest = read_manifest(result.out)
    assert manifest.loc[manifest.image_id == "mismatch", "lung_mask"].item() == ""
    assert manifest.loc[manifest.image_id == "mismatch", "shortcut_mask"].item() != ""


def test_ingest_cache_images_and_masks_aligned_and_bright_is_dense(ingested):
    result, config, _ = ingested
    cache = ImageCache.open(result.out)
    manifest = read_manifest(result.out)
    assert cache.images.shape == (len(manifest), 32, 32) and cache.images.dtype == np.float16
    assert sorted(manifest["cache_index"]) == list(range(len(manifest)))
    assert set(np.unique(cache.lung_masks)) <= {0, 1} and set(np.unique(cache.shortcut_masks)) <= {0, 3}
    for row in manifest.itertuples():
        image, lungs = cache.images[row.cache_index].astype(float), cache.lung_masks[row.cache_index]
        assert 0.0 <= image.min() and image.max() <= 1.0
        if row.lung_mask:
            # the phantom's lungs are dark in every stored variant (MONOCHROME1 inverted, rescaled, windowed)
            body = image[(lungs == 0) & (image > 0)]  # the square padding is 0
            assert image[lungs == 1].mean() < body.mean() - 0.1, row.image_id


def test_ingest_duplicates_reported_and_in_one_split(ingested):
    result, _, _ = ingested
    manifest = read_manifest(result.out).set_index("image_id")
    assert manifest.loc["img005", "duplicate_group"] != ""
    assert manifest.loc["img005", "duplicate_group"] == manifest.loc["img005_copy", "duplicate_group"]
    assert manifest.loc["img005", "split"] == manifest.loc["img005_copy", "split"]
    assert (result.summary.duplicates.groups, result.summary.duplicates.images) == (1, 2)


def test_ingest_no_phi_in_any_output_and_source_untouched(export, ingested):
    _, source, _ = export
    result, _, before = ingested
    salt = (result.out / "salt.txt").read_text().strip()
    for path in result.out.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert FAKE_NAME.encode() not in data and FAKE_ID_PREFIX.encode() not in data, path
            if path.name != "salt.txt":
                assert salt.encode() not in data, path
    assert _tree_hash(source) == before


def test_ingest_summary_counts_and_confounding_warning(export, ingested):
    _, _, truth = export
    result, _, _ = ingested
    summary = result.summary
    assert summary.n_images == 42 and summary.n_rejected == len(BAD)
    counts = summary.counts_site_position_label
    assert sum(n for site in counts.values() for pos in site.values() for n in pos.values()) == 42
    assert set(counts["north"]) == {"erect", "supine"}
    assert any(w.startswith("position alone predicts the label with AUROC") for w in summary.confounding.warnings)
    north = pd.Series([t["age_group"] for t in truth.values() if t["site"] == "north"]).value_counts().to_dict()
    assert summary.age_per_site["north"].age_group == north and north["child"] > 0


def test_ingest_rerun_unchanged_reuses_cache_and_changed_config_rebuilds(export, ingested, tmp_path):
    root, source, _ = export
    result, config, _ = ingested
    stamp = (result.out / "manifest.parquet").stat().st_mtime_ns
    keys = read_manifest(result.out).set_index("image_id")["patient_key"]
    again = run(source=source, out=result.out, metadata=root / "labels.csv", config=config, progress=False)
    assert again.reused and (result.out / "manifest.parquet").stat().st_mtime_ns == stamp
    bigger = run(source=source, out=result.out, metadata=root / "labels.csv", config=config, size=48, progress=False)
    assert not bigger.reused and ImageCache.open(result.out).size == 48
    # the salt kept beside the manifest keeps patient keys stable across rebuilds
    assert keys.sort_index().equals(read_manifest(result.out).set_index("image_id")["patient_key"].sort_index())
    run(source=source, out=result.out, metadata=root / "labels.csv", config=config, progress=False)


def test_ingest_failure_midway_keeps_previous_outputs(export, ingested, monkeypatch):
    root, source, _ = export
    result, config, _ = ingested
    before = _tree_hash(result.out)
    import pipeline.ingest.summary as summary_module

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # what a user's Ctrl-C looks like half way through

    monkeypatch.setattr(summary_module, "build_summary", crash)
    with pytest.raises(KeyboardInterrupt):
        run(source=source, out=result.out, metadata=root / "labels.csv", config=config, size=40, progress=False)
    assert _tree_hash(result.out) == before
    assert [p.name for p in result.out.parent.iterdir()] == [result.out.name]  # no temporary folder left


def test_ingest_nothing_usable_raises_and_cli_exits_2(tmp_path, capsys):
    source = tmp_path / "src"
    source.mkdir()
    (source / "readme.txt").write_text("no images here")  # plainly not an image: skipped, and the error says so
    (source / "scan").write_text("no suffix: tried as DICOM")
    with pytest.raises(DataError, match="at least one usable image"):
        run(source=source, out=tmp_path / "out", config=IngestConfig(label_default=0), progress=False)
    assert main(["ingest", str(source), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "not_dicom" in err and "1 more files skipped as not images (e.g. readme.txt)" in err
    assert not (tmp_path / "out").exists()


def test_ingest_cli_png_folder_with_nih_csv_exits_0_with_summary_line(tmp_path, capsys):
    from PIL import Image

    from tests.helpers.ingest_factory import phantom

    source = tmp_path / "images"
    source.mkdir()
    rows = ["Image Index,Finding Labels,Patient ID,Patient Age,Patient Gender,View Position"]
    for i in range(6):
        image, _ = phantom(30, 40, i)
        Image.fromarray((image * 255).astype(np.uint8)).save(source / f"{i:08d}_000.png")
        rows.append(f"{i:08d}_000.png,{'Pneumonia|Effusion' if i % 2 else 'No Finding'},{i},{30 + i},M,PA")
    (tmp_path / "meta.csv").write_text("\n".join(rows) + "\n")
    code = main(["ingest", str(source), "--out", str(tmp_path / "out"), "--metadata", str(tmp_path / "meta.csv"),
                 "--config", str(REPO / "configs" / "ingest" / "nih_chestxray14.yaml"), "--size", "16"])
    assert code == 0 and "kept 6 images, rejected 0 files" in capsys.readouterr().err
    manifest = read_manifest(tmp_path / "out")
    assert ImageCache.open(tmp_path / "out").size == 16
    assert manifest["label"].tolist() == [0, 1, 0, 1, 0, 1] and set(manifest["site"]) == {"nih"}
    assert set(manifest["split"]) <= {"train", "val"} and (manifest["position"] == "erect").all()


def test_manifest_schema_json_matches_manifest_columns_and_output(ingested):
    import json

    from pipeline.manifest import COLUMNS

    schema = json.loads((REPO / "data_manifests" / "schema.json").read_text())
    assert schema["required"] == list(COLUMNS)
    manifest = read_manifest(ingested[0].out)
    assert set(manifest.columns) <= set(schema["properties"])  # every written column is documented
    for column, spec in schema["properties"].items():
        if "enum" in spec:
            assert set(manifest[column].tolist()) <= set(spec["enum"]), column


def test_ingest_metadata_matching_no_file_names_both_sides(export, tmp_path):
    root, source, _ = export
    with pytest.raises(DataError, match="basename"):
        run(source=source / "north", out=tmp_path / "out", metadata=root / "labels.csv",
            config=REPO / "configs" / "ingest" / "synth_demo.yaml", progress=False)


def test_ingest_changed_source_file_is_not_reused(tmp_path):
    source = tmp_path / "src"
    for i in range(3):
        write_cxr(source / f"x{i}.dcm", seed=i)
    config = REPO / "configs" / "ingest" / "dicom_folder.yaml"
    first = run(source=source, out=tmp_path / "out", config=config, size=16, progress=False)
    assert not first.reused and run(source=source, out=tmp_path / "out", config=config, size=16, progress=False).reused
    write_cxr(source / "x1.dcm", seed=7, rows=44)  # same name, new content
    again = run(source=source, out=tmp_path / "out", config=config, size=16, progress=False)
    assert not again.reused
    assert read_manifest(tmp_path / "out").set_index("image_id").loc["x1", "rows"] == 44


def test_ingest_domain_columns_tuple_and_bad_size_rejected(tmp_path, capsys):
    source = tmp_path / "src"
    write_cxr(source / "a.dcm", seed=1, institution="")
    write_cxr(source / "b.dcm", seed=2, institution="", view="AP", series="CHEST AP SUPINE")
    config = IngestConfig(label_default=0, site_constant="clinic", domain_columns=["site", "position"])
    run(source=source, out=tmp_path / "out", config=config, size=16, progress=False)
    manifest = read_manifest(tmp_path / "out").set_index("image_id")
    assert manifest.loc["a", "domain"] == "clinic|erect" and manifest.loc["b", "domain"] == "clinic|supine"
    assert manifest.loc["a", "site_source"] == "config:site_constant"
    assert main(["ingest", str(source), "--out", str(tmp_path / "o2"), "--size", "3"]) == 2
    assert "--size must be between 8 and 4096" in capsys.readouterr().err


def test_ingest_written_by_other_ingest_code_is_not_reused(tmp_path, monkeypatch):
    """The reuse check covers the ingest code: an output from before a decoding or privacy fix is rebuilt."""
    from pipeline.ingest import runner

    source = tmp_path / "src"
    write_cxr(source / "a.dcm", seed=1)
    config = IngestConfig(site_constant="clinic")
    first = run(source=source, out=tmp_path / "out", config=config, size=16, progress=False)
    assert not first.reused
    assert run(source=source, out=tmp_path / "out", config=config, size=16, progress=False).reused
    monkeypatch.setattr(runner, "_code_digest", lambda: "older ingest code")
    assert not run(source=source, out=tmp_path / "out", config=config, size=16, progress=False).reused
