"""Second new-user trial, ingest finding 5: a file name holding the image's patient name or ID (from its DICOM
header, or its CSV patient column) never reaches an output: manifest (parquet bytes too), rejects, summary, console."""

from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.ingest import IngestConfig, MetadataMapping, run
from pipeline.manifest import read_manifest
from tests.helpers.ingest_factory import phantom, write_cxr

SECRETS = (b"janeprivate", b"phi-id-0002", b"mrn77881", b"phi-id-0009")


def _png(path: Path, seed: int) -> None:
    image, _ = phantom(24, 20, seed)
    Image.fromarray((image * 255).astype(np.uint8)).save(path)


def test_patient_names_and_ids_in_file_names_reach_no_output(tmp_path, capsys):
    src = tmp_path / "src"
    write_cxr(src / "Janeprivate_DOE_chest.dcm", seed=1)  # PatientName Doe^Janeprivate (any case)
    write_cxr(src / "scan_PHI-ID-0002.dcm", seed=2)  # PatientID PHI-ID-0002
    write_cxr(src / "other" / "Janeprivate_DOE_chest.dcm", seed=3)  # same name elsewhere: paths stay unique
    for i in range(4, 8):
        write_cxr(src / f"plain_{i}.dcm", seed=i)
    write_cxr(src / "JANEPRIVATE_cut.dcm", seed=8, truncate=True)  # rejected by the decoder
    write_cxr(src / "norow_PHI-ID-0009.dcm", seed=9)  # rejected before decoding: no CSV row
    (src / "png").mkdir()
    _png(src / "png" / "MRN77881_front.png", seed=10)  # the CSV patient column holds MRN77881
    _png(src / "png" / "nopatient.png", seed=11)
    names = ["Janeprivate_DOE_chest.dcm", "scan_PHI-ID-0002.dcm", "other/Janeprivate_DOE_chest.dcm",
             *[f"plain_{i}.dcm" for i in range(4, 8)], "JANEPRIVATE_cut.dcm", "png/MRN77881_front.png",
             "png/nopatient.png"]
    pids = {"png/MRN77881_front.png": "MRN77881"}
    csv = tmp_path / "labels.csv"
    csv.write_text("file,label,pid\n" + "".join(f"{n},{i % 2},{pids.get(n, f'P{i}')}\n" for i, n in enumerate(names))
                   + "gone_MRN55555.png,1,MRN55555\n", encoding="utf-8")
    mapping = MetadataMapping(file_column="file", label_column="label", positive_values=["1"], negative_values=["0"],
                              patient_column="pid")
    result = run(source=src, metadata=csv, out=tmp_path / "out", config=IngestConfig(metadata_mapping=mapping),
                 size=16, progress=False, workers=1)
    frame = read_manifest(result.out)
    assert len(frame) == 9 and frame["path"].is_unique and frame["image_id"].is_unique
    assert (frame["path"].str.contains(r"\[patient", regex=True)).sum() == 4
    assert "png/nopatient.png" in set(frame["path"]) and "plain_4" in set(frame["image_id"])  # others untouched
    assert result.summary.patient_identifiers_in_file_names.n == 6  # 4 kept, 2 rejected
    err = capsys.readouterr().err.lower()
    assert "6 file names contained patient identifiers" in err
    outputs = [p for p in result.out.rglob("*") if p.is_file()]
    assert any(p.name == "manifest.parquet" for p in outputs) and any(p.name == "rejects.csv" for p in outputs)
    for path in outputs:  # `grep -a` of every output, binary parquet and cache included
        data = path.read_bytes().lower()
        for secret in SECRETS:
            assert secret not in data, (path.name, secret)
    for secret in (*SECRETS, b"mrn55555"):
        assert secret.decode() not in err
    rejects = (result.out / "rejects.csv").read_text(encoding="utf-8")
    assert "[patient]_cut.dcm" in rejects and "norow_[patient].dcm" in rejects
