"""Second new-user trial, ingest findings 4 and 13: a CSV value that overrides a differing DICOM tag is counted with
examples (and warned about when it moves an image across the held-out line); a file without a CSV row that is not an
image gets the more basic reason."""

from pathlib import Path

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pipeline.ingest import IngestConfig, MetadataMapping, run
from pipeline.manifest import read_manifest
from tests.helpers.ingest_factory import write_cxr


def _mapping(**extra) -> MetadataMapping:
    return MetadataMapping(file_column="file", label_column="label", positive_values=["1"], negative_values=["0"],
                           match="basename", **extra)


def test_csv_site_overriding_the_tag_is_counted_and_a_heldout_move_warned(tmp_path, capsys):
    src = tmp_path / "src"
    rows = []
    for i in range(8):
        tag = "Harbour Clinic" if i < 4 else "North General"
        write_cxr(src / f"img{i}.dcm", seed=i, institution=tag, sex="F" if i != 5 else "M", age="045Y")
        csv_site = "north general" if i == 2 else ("HARBOUR CLINIC" if i == 1 else tag)  # i=1: case only
        rows.append(f"img{i}.dcm,{i % 2},{csv_site},F,45\n")
    csv = tmp_path / "labels.csv"
    csv.write_text("file,label,hospital,sex,age\n" + "".join(rows), encoding="utf-8")
    config = IngestConfig(metadata_mapping=_mapping(site_column="hospital", sex_column="sex", age_column="age"),
                          splits={"test_sites": ["Harbour Clinic"]})
    result = run(source=src, metadata=csv, out=tmp_path / "out", config=config, size=16, progress=False, workers=1)
    found = result.summary.field_disagreements
    assert found["site"].n == 1  # the case-only difference is one spelling, not a disagreement
    example = found["site"].examples[0]
    assert example.file == "img2.dcm" and example.kept_source == "csv:hospital"
    assert example.other == "Harbour Clinic" and example.other_source == "dicom:InstitutionName"
    moves = found["site"].heldout_moves
    assert moves.n == 1 and moves.examples[0].tag_split == "test"
    assert moves.examples[0].kept_split == "training"
    assert found["sex"].n == 1 and found["sex"].examples[0].file == "img5.dcm"
    assert "age_years" not in found  # '45' and '045Y' agree
    frame = read_manifest(result.out)
    assert frame.loc[frame["path"] == "img2.dcm", "split"].item() in {"train", "val"}  # precedence unchanged
    err = capsys.readouterr().err
    assert "WARNING" in err and "img2.dcm" in err and "held-out" in err
    assert "sex: 1 image where" in err


def _sr(path: Path) -> None:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.88.11", ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "SR"
    ds.save_as(path, enforce_file_format=True)


def test_files_without_a_row_get_the_more_basic_reason_first(tmp_path):
    src = tmp_path / "src"
    for i in range(4):
        write_cxr(src / f"img{i}.dcm", seed=i)
    write_cxr(src / "norow_image.dcm", seed=9)  # an image: no_metadata_row
    write_cxr(src / "norow_cut.dcm", seed=10, truncate=True)  # cut inside its pixel data
    data = (src / "img0.dcm").read_bytes()
    (src / "norow_headcut.dcm").write_bytes(data[:300])  # cut inside its header
    _sr(src / "norow_report.dcm")
    (src / "norow_text.dcm").write_text("not a dicom at all", encoding="utf-8")
    write_cxr(src / "norow_ct.dcm", seed=11, modality="CT")
    csv = tmp_path / "labels.csv"
    csv.write_text("file,label\n" + "".join(f"img{i}.dcm,{i % 2}\n" for i in range(4)), encoding="utf-8")
    config = IngestConfig(metadata_mapping=_mapping(), modalities=["DX"])
    result = run(source=src, metadata=csv, out=tmp_path / "out", config=config, size=16, progress=False, workers=1)
    import pandas as pd

    rejects = pd.read_csv(result.out / "rejects.csv", keep_default_na=False).set_index("path")
    assert rejects.loc["norow_image.dcm", "reason"] == "no_metadata_row"
    assert rejects.loc["norow_report.dcm", "reason"] == "no_pixel_data"
    assert "SR" in rejects.loc["norow_report.dcm", "detail"]
    assert rejects.loc["norow_headcut.dcm", "reason"] == "truncated"
    assert rejects.loc["norow_text.dcm", "reason"] == "not_dicom"
    assert rejects.loc["norow_ct.dcm", "reason"] == "wrong_modality"
    for name in ("norow_report.dcm", "norow_headcut.dcm", "norow_text.dcm", "norow_ct.dcm"):
        assert "no row of labels.csv" in rejects.loc[name, "detail"]  # the missing row is still said
