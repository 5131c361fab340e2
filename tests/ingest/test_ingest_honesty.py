"""Ingest never mislabels or drops a row silently (issue 11 A, items 1-5): UID-style stems, CSV rows without an
image, conflicting duplicate rows, config names that match nothing, unlabelled images. Small real PNGs/DICOMs."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline.cli import main
from pipeline.errors import ConfigError, DataError
from pipeline.ingest import IngestConfig, MetadataMapping, run
from pipeline.ingest.csv_source import row_key
from pipeline.manifest import labelled, n_unlabelled, read_manifest, validate_manifest
from tests.helpers.ingest_factory import phantom, write_cxr

REPO = Path(__file__).resolve().parents[2]


def _pngs(folder: Path, names: list[str], seed0: int = 0) -> None:
    for i, name in enumerate(names):
        image, _ = phantom(24, 20, seed0 + i)
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 255).astype(np.uint8)).save(folder / name)


def _csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def _mapping(**kw) -> MetadataMapping:
    base = {"file_column": "file", "label_column": "finding", "positive_values": ["pos"], "negative_values": ["neg"],
            "site_constant": "clinic"}
    return MetadataMapping(**{**base, **kw})


def _ingest(tmp_path, names, rows, *, mapping=None, header="file,finding", **config):
    source = tmp_path / "src"
    _pngs(source, names)
    csv = _csv(tmp_path / "meta.csv", header, rows)
    cfg = IngestConfig(metadata_mapping=mapping or _mapping(), **config)
    return run(source=source, out=tmp_path / "out", metadata=csv, config=cfg, size=16, progress=False)


def _labels(out: Path) -> dict[str, object]:
    frame = read_manifest(out)
    return {p: (None if pd.isna(v) else int(v)) for p, v in zip(frame["path"], frame["label"], strict=True)}


# 1. stems
def test_stem_drops_only_a_known_image_suffix():
    assert row_key("CR.1.2.840.113564.1.png", "stem") == "CR.1.2.840.113564.1"
    assert row_key("1.2.840.10008.5.dcm", "stem") == "1.2.840.10008.5"
    assert row_key("1.2.840.10008.5", "stem") == "1.2.840.10008.5"  # no image suffix: the whole name
    assert row_key("dir/x.JPEG", "stem") == "x" and row_key("x.tar", "stem") == "x.tar"


def test_uid_style_names_with_match_stem_get_their_own_rows(tmp_path):
    result = _ingest(tmp_path, ["CR.1.2.840.1.png", "CR.1.2.840.2.png"], ["CR.1.2.840.1,neg", "CR.1.2.840.2,pos"],
                     mapping=_mapping(match="stem"))
    assert _labels(result.out) == {"CR.1.2.840.1.png": 0, "CR.1.2.840.2.png": 1}
    assert result.summary.metadata_rows_matched == 2 and result.summary.metadata_rows_without_image.n == 0


def test_one_csv_key_naming_two_files_is_an_error_naming_both(tmp_path, capsys):
    with pytest.raises(DataError, match=r"'a/x.png'.*'b/x.png'|'b/x.png'.*'a/x.png'"):
        _ingest(tmp_path, ["a/x.png", "b/x.png", "a/y.png"], ["x.png,neg", "y.png,pos"],
                mapping=_mapping(match="basename"))


# 2. rows without an image
def test_csv_rows_without_image_are_counted_named_and_printed(tmp_path, capsys):
    names = [f"img{i}.png" for i in range(4)]
    rows = [f"img{i}.png,{'pos' if i % 2 else 'neg'}" for i in range(10)]
    result = _ingest(tmp_path, names, rows)
    summary = json.loads((result.out / "summary.json").read_text())
    assert summary["metadata_rows"] == 10 and summary["metadata_rows_matched"] == 4
    missing = summary["metadata_rows_without_image"]
    assert missing["n"] == 6 and missing["examples"][:3] == ["img4.png", "img5.png", "img6.png"]
    err = capsys.readouterr().err
    assert "10 CSV rows, 4 matched a file, 6 name no file under SOURCE (e.g. img4.png, img5.png, img6.png)" in err


# 3. duplicates
def test_conflicting_duplicate_rows_reject_the_image_naming_both_lines(tmp_path, capsys):
    names = [f"a{i}.png" for i in range(6)]
    rows = [f"a{i}.png,{'pos' if i % 2 else 'neg'}" for i in range(6)] + ["a0.png,pos", "a1.png,pos"]
    result = _ingest(tmp_path, names, rows)
    rejects = pd.read_csv(result.out / "rejects.csv")
    conflict = rejects[rejects["reason"] == "conflicting_metadata_rows"]
    assert conflict["path"].tolist() == ["a0.png"]
    detail = conflict["detail"].iloc[0]
    assert "lines 2 and 8" in detail and "label 0 vs 1" in detail
    assert "a0.png" not in _labels(result.out) and _labels(result.out)["a1.png"] == 1
    assert result.summary.conflicting_metadata_rows == 1 and result.summary.metadata_duplicate_rows == 1
    assert "1 agreeing duplicate rows, 1 files with conflicting rows" in capsys.readouterr().err


def test_duplicates_that_differ_only_in_unmapped_columns_stay_quiet(tmp_path):
    rows = ["a0.png,neg,1", "a1.png,pos,2", "a0.png,neg,3"]
    result = _ingest(tmp_path, ["a0.png", "a1.png"], rows, header="file,finding,box")
    assert result.summary.n_rejected == 0 and result.summary.metadata_duplicate_rows == 1
    # a differing mapped field other than the label (site) also conflicts
    rows = ["a0.png,neg,north", "a1.png,pos,north", "a0.png,neg,south"]
    result = _ingest(tmp_path, ["a0.png", "a1.png"], rows, header="file,finding,hospital",
                     mapping=_mapping(site_column="hospital"))
    detail = pd.read_csv(result.out / "rejects.csv")["detail"].tolist()
    assert len(detail) == 1 and "site 'north' vs 'south'" in detail[0]


# 4. names in the config
def test_test_site_matching_by_case_is_resolved_and_reported(tmp_path, capsys):
    names = [f"{site}/{i}.png" for site in ("figure1", "other") for i in range(4)]
    rows = [f"{n},{'pos' if i % 2 else 'neg'},{n.split('/')[0]}" for i, n in enumerate(names)]
    result = _ingest(tmp_path, names, rows, header="file,finding,hospital", mapping=_mapping(site_column="hospital"),
                     splits={"test_sites": ["Figure1"]}, domain_columns=["Site"])
    frame = read_manifest(result.out)
    assert set(frame.loc[frame["site"] == "figure1", "split"]) == {"test"}
    assert set(frame.loc[frame["site"] == "other", "split"]) <= {"train", "val"}
    assert ("splits.test_sites", "Figure1", "figure1") in \
        {(r.key, r.given, r.resolved) for r in result.summary.config_names_resolved}
    assert "'Figure1' matched 'figure1'" in capsys.readouterr().err


def test_a_test_site_matching_nothing_exits_2_listing_the_sites(tmp_path, capsys):
    source = tmp_path / "src"
    _pngs(source, ["a.png", "b.png"])
    csv = _csv(tmp_path / "m.csv", "file,finding", ["a.png,neg", "b.png,pos"])
    config = tmp_path / "c.yaml"
    config.write_text("metadata_mapping: {file_column: file, label_column: finding, positive_values: [pos], "
                      "negative_values: [neg], site_constant: clinic}\nsplits: {test_sites: [Figure1]}\n")
    code = main(["ingest", str(source), "--out", str(tmp_path / "out"), "--metadata", str(csv), "--config", str(config)])
    err = capsys.readouterr().err
    assert code == 2 and "splits.test_sites" in err and "'Figure1'" in err and "['clinic']" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("config", "needle"), [
    ({"site_map": {"Nowhere Hospital": "nowhere"}}, "site_map keys"),
    ({"splits": {"ood_val_sites": ["harbour"]}}, "splits.ood_val_sites"),
    ({"domain_columns": ["site", "hospital_wing"]}, "domain_columns"),
    ({"shortcut_attributes": ["position", "laterality"]}, "shortcut_attributes"),
])
def test_every_configured_name_that_matches_nothing_is_a_config_error(tmp_path, config, needle):
    with pytest.raises(ConfigError, match=needle):
        _ingest(tmp_path, ["a.png", "b.png"], ["a.png,neg", "b.png,pos"], **config)


def test_label_values_and_site_map_keys_match_case_insensitively(tmp_path):
    mapping = _mapping(positive_values=["POS"], negative_values=["Neg"], site_constant="Clinic One")
    result = _ingest(tmp_path, ["a.png", "b.png"], ["a.png,neg", "b.png,pos"], mapping=mapping,
                     site_map={"clinic one": "c1"})
    assert _labels(result.out) == {"a.png": 0, "b.png": 1}
    assert set(read_manifest(result.out)["site"]) == {"c1"}
    with pytest.raises(ConfigError, match=r"positive_values \['COVID'\].*\['neg', 'pos'\]"):
        _ingest(tmp_path, ["a.png", "b.png"], ["a.png,neg", "b.png,pos"], mapping=_mapping(positive_values=["COVID"]))


# 5. unlabelled images
def test_dicom_folder_without_labels_is_kept_unlabelled_with_default_and_shipped_config(tmp_path, capsys):
    source = tmp_path / "pacs"
    for i in range(3):
        write_cxr(source / f"{i}.dcm", seed=i)
    assert main(["ingest", str(source), "--out", str(tmp_path / "a")]) == 0
    assert main(["ingest", str(source), "--out", str(tmp_path / "b"), "--config",
                 str(REPO / "configs" / "ingest" / "dicom_folder.yaml")]) == 0
    assert "unlabelled: 3 of the kept images" in capsys.readouterr().err
    for out in ("a", "b"):
        frame = read_manifest(tmp_path / out)
        assert str(frame["label"].dtype) == "Int64" and frame["label"].isna().all() and len(frame) == 3
        assert set(frame["split"]) <= {"train", "val"} and n_unlabelled(frame) == 3 and len(labelled(frame)) == 0
        summary = json.loads((tmp_path / out / "summary.json").read_text())
        assert summary["n_unlabelled"] == 3 and summary["confounding"]["n_labelled"] == 0
    assert "label_default" not in "".join(p.read_text() for p in (REPO / "configs" / "ingest").glob("*.yaml"))


def test_blank_label_kept_unknown_and_unmapped_value_rejected(tmp_path):
    rows = ["a.png,neg", "b.png,pos", "c.png,", "d.png,maybe"]
    result = _ingest(tmp_path, ["a.png", "b.png", "c.png", "d.png"], rows)
    assert _labels(result.out) == {"a.png": 0, "b.png": 1, "c.png": None}
    assert result.summary.rejects_by_reason == {"label_unmapped": 1} and result.summary.n_unlabelled == 1
    counts = result.summary.counts_site_position_label["clinic"]["unknown"]
    assert counts == {"0": 1, "1": 1, "unknown": 1}
    # confounding measures the labelled rows only, and says how many
    assert result.summary.confounding.n_labelled == 2 and result.summary.confounding.n_unlabelled == 1


def test_manifest_label_contract_and_helpers():
    from pipeline.errors import DataError as Err

    frame = read_manifest_like(pd.array([1, pd.NA, 0], dtype="Int64"))
    validate_manifest(frame)
    assert n_unlabelled(frame) == 1 and labelled(frame)["label"].tolist() == [1, 0]
    assert labelled(frame).index.tolist() == [0, 1]
    with pytest.raises(Err, match=r"label must be 0 or 1 \(or missing"):
        validate_manifest(read_manifest_like(pd.array([1, 2, pd.NA], dtype="Int64")))


def read_manifest_like(labels) -> pd.DataFrame:
    from pipeline.manifest import COLUMNS

    n = len(labels)
    frame = pd.DataFrame({c: ["x"] * n for c in COLUMNS})
    frame["image_id"] = [f"i{i}" for i in range(n)]
    frame["patient_key"] = [f"p{i}" for i in range(n)]
    frame["position"], frame["age_group"], frame["split"] = "unknown", "unknown", "train"
    frame["label"] = labels
    return frame
