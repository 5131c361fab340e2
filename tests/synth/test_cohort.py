"""The cohort on disk: determinism, DICOM round-trip, CSVs, extension of a partial cohort, the CLI."""

import csv
import hashlib
from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import RLELossless

from pipeline.cli import main
from pipeline.synth import run

DEMO = Path(__file__).resolve().parents[2] / "configs" / "cohort" / "demo.yaml"


def _hashes(root: Path) -> dict[str, str]:
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != "stage.json")
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_run_same_seed_same_bytes_across_worker_counts(tmp_path, small_cohort):
    again = run(config=DEMO, out=tmp_path / "a", n_per_site=6, size=64, counterfactual="position", workers=1,
                progress=False)
    reference = _hashes(small_cohort.out)
    assert len(reference) == 5 * 6 * 2 * 4 + 4  # (dcm + 3 masks) x originals and counterfactuals + csv/yaml/state
    assert _hashes(again.out) == reference


def test_run_other_seed_other_images(tmp_path, small_cohort):
    other = run(config=DEMO, out=tmp_path / "b", n_per_site=2, size=64, seed=7, workers=1, progress=False)
    name = "dicom/north/north_00000.dcm"
    assert (other.out / name).read_bytes() != (small_cohort.out / name).read_bytes()


def test_run_writes_contract_files_and_columns(small_cohort):
    out = small_cohort.out
    truth, labels = _rows(out / "truth.csv"), _rows(out / "labels.csv")
    assert len(truth) == len(labels) == 30 and (out / "cohort.yaml").is_file() and (out / "stage.json").is_file()
    assert set(labels[0]) == {"file", "finding"}
    assert {row["finding"] for row in labels} <= {"COVID-19", "No Finding"}
    needed = {"image_id", "site", "role", "index", "position", "view", "age_years", "age_group", "sex", "label",
              "opacity_present", "devices_present", "stamp_present", "path", "counterfactual_path"}
    assert needed <= set(truth[0])
    for row, label in zip(truth, labels, strict=True):
        assert (out / "dicom" / label["file"]).is_file() and (out / row["path"]).is_file()
        assert (out / row["counterfactual_path"]).is_file()
        assert (row["label"] == "1") == (label["finding"] == "COVID-19")
        assert (row["view"], row["counterfactual_position"]) in {("AP", "erect"), ("PA", "supine")}


def test_dicom_round_trip_tags_photometry_bits_and_syntax(small_cohort, demo_config):
    out = small_cohort.out
    for row in _rows(out / "truth.csv"):
        ds = pydicom.dcmread(out / row["path"])
        style = demo_config.site(row["site"]).style
        assert ds.InstitutionName == demo_config.site(row["site"]).institution
        assert ds.BodyPartExamined == "CHEST" and ds.Modality == style.modality
        assert ds.ViewPosition == row["view"] and ds.PatientSex == row["sex"]
        assert ds.PatientAge == f"{int(row['age_years']):03d}Y" and ds.PatientName and ds.PatientID
        assert ds.SeriesDescription == ("CHEST AP PORTABLE SUPINE" if row["view"] == "AP" else "CHEST PA ERECT")
        assert ds.PhotometricInterpretation == style.photometric and ds.BitsStored == style.bits_stored
        assert ("PixelSpacing" in ds) == (style.pixel_spacing_tag != "ImagerPixelSpacing")
        assert ("ImagerPixelSpacing" in ds) == (style.pixel_spacing_tag != "PixelSpacing")
        assert float(ds.RescaleSlope) == style.rescale_slope and float(ds.WindowWidth) > 0
        pixels = ds.pixel_array
        assert pixels.shape == (64, 64) and int(pixels.max()) <= (1 << style.bits_stored) - 1
        if style.transfer_syntax == "rle_lossless":
            assert ds.file_meta.TransferSyntaxUID == RLELossless
            assert ds.PixelData[:4] == b"\xfe\xff\x00\xe0"  # encapsulated: an item tag, not raw pixels
        lungs = np.asarray(Image.open(out / row["lung_mask"])) > 0
        stored_lungs, stored_rest = pixels[lungs].mean(), pixels[~lungs].mean()
        if style.photometric == "MONOCHROME1":  # air displays dark, so it is stored high
            assert stored_lungs > stored_rest, row["image_id"]
        else:
            assert stored_lungs < stored_rest, row["image_id"]


def test_masks_written_beside_each_dicom_align_with_it(small_cohort):
    out = small_cohort.out
    for row in _rows(out / "truth.csv")[::5]:
        images = {kind: Image.open(out / row[f"{kind}_mask"]) for kind in ("lung", "lesion", "shortcut")}
        # 1-bit binary masks and a palette image whose indices are the shortcut codes (smaller, faster to decode)
        assert (images["lung"].mode, images["lesion"].mode, images["shortcut"].mode) == ("1", "1", "P")
        lungs, lesion, shortcuts = (np.asarray(images[kind]) for kind in ("lung", "lesion", "shortcut"))
        assert lungs.shape == lesion.shape == shortcuts.shape == (64, 64)
        assert lungs.any() and set(np.unique(shortcuts)) <= {0, 1, 2, 3, 4, 5}
        assert not (lesion & ~lungs).any()


def test_counterfactual_pairs_same_patient_other_position(small_cohort):
    out = small_cohort.out
    for row in _rows(out / "truth.csv"):
        original, twin = pydicom.dcmread(out / row["path"]), pydicom.dcmread(out / row["counterfactual_path"])
        assert twin.PatientID == original.PatientID and twin.ViewPosition != original.ViewPosition
        assert twin.StudyInstanceUID == original.StudyInstanceUID and twin.SOPInstanceUID != original.SOPInstanceUID
        for suffix in ("_lungs.png", "_lesion.png"):
            a = np.asarray(Image.open(out / row["path"].replace(".dcm", suffix)))
            b = np.asarray(Image.open(out / row["counterfactual_path"].replace(".dcm", suffix)))
            assert (a == b).all()


def test_run_extends_a_partial_cohort_and_keeps_identical_files(tmp_path, small_cohort):
    out = tmp_path / "grow"
    first = run(config=DEMO, out=out, n_per_site=3, size=64, counterfactual="position", workers=1, progress=False)
    kept = out / "dicom" / "east" / "east_00002.dcm"
    stamp = kept.stat().st_mtime_ns
    second = run(config=DEMO, out=out, n_per_site=6, size=64, counterfactual="position", workers=2, progress=False)
    assert first.n_rendered == 30 and second.n_rendered == 30  # only the 15 new patients, twice
    assert kept.stat().st_mtime_ns == stamp
    assert _hashes(out) == _hashes(small_cohort.out)


def test_run_shrinking_removes_stale_images_and_counterfactuals(tmp_path):
    out = tmp_path / "shrink"
    run(config=DEMO, out=out, n_per_site=4, size=32, counterfactual="position", workers=1, progress=False)
    run(config=DEMO, out=out, n_per_site=2, size=32, workers=1, progress=False)
    assert sorted(p.name for p in (out / "dicom" / "west").glob("*.dcm")) == ["west_00000.dcm", "west_00001.dcm"]
    assert not (out / "counterfactual").exists()


def test_run_changed_style_rerenders_that_site(tmp_path):
    import yaml

    out = tmp_path / "restyle"
    run(config=DEMO, out=out, n_per_site=2, size=32, workers=1, progress=False)
    data = yaml.safe_load(DEMO.read_text())
    data["sites"][0]["style"]["noise"] = 0.1
    path = tmp_path / "restyled.yaml"
    path.write_text(yaml.safe_dump(data))
    result = run(config=path, out=out, n_per_site=2, size=32, workers=1, progress=False)
    assert result.n_rendered == 2  # north only


def test_cli_synth_writes_cohort_and_bad_option_exits_2(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["synth", "--config", str(DEMO), "--out", str(out), "--n-per-site", "2", "--size", "32",
                 "--workers", "1"]) == 0
    assert len(list((out / "dicom").rglob("*.dcm"))) == 10
    assert main(["synth", "--config", str(DEMO), "--out", str(tmp_path / "x"), "--counterfactual", "age"]) == 2
    assert "counterfactual" in capsys.readouterr().err and not (tmp_path / "x").exists()


@pytest.mark.parametrize("bits", [10, 12, 14])
def test_dicom_values_fill_but_never_exceed_bits_stored(bits, demo_config):
    from pipeline.synth.dicom_writer import stored_pixels

    site = demo_config.site("north")
    site = site.model_copy(update={"style": site.style.model_copy(update={"bits_stored": bits})})
    values = stored_pixels(np.linspace(0, 1, 101, dtype=np.float32).reshape(1, -1), site)
    assert values.min() == 0 and values.max() == (1 << bits) - 1
