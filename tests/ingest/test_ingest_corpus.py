"""Every file of pydicom's shipped test corpus is ingested or rejected with a reason; none stops the run."""

from pathlib import Path

import pandas as pd
import pydicom.data

from pipeline.ingest import load_ingest_config, run
from pipeline.ingest.discover import not_an_image
from pipeline.manifest import read_manifest

REPO = Path(__file__).resolve().parents[2]


def test_ingest_pydicom_corpus_every_file_ingested_or_rejected(tmp_path):
    # the files in pydicom's wheel (get_testdata_files() would also try to download pydicom-data's, 15 s offline)
    root = Path(pydicom.data.__file__).parent / "test_files"
    files = sorted(f for f in root.rglob("*") if f.is_file())
    assert len(files) > 100
    config = load_ingest_config(REPO / "configs" / "ingest" / "dicom_folder.yaml", size=32)
    config = config.model_copy(update={"modalities": None})  # every modality: exercise every decoder in the corpus
    result = run(source=root, out=tmp_path / "out", config=config, workers=2, progress=False)
    manifest = read_manifest(result.out)
    rejects = pd.read_csv(result.out / "rejects.csv", keep_default_na=False)
    seen = set(manifest["path"]) | set(rejects["path"])
    relative = [f.relative_to(root).as_posix() for f in files]
    # README.txt, *.json, zipMR.gz: plainly not images, skipped and counted (not rejected as images)
    skipped = [r for r in relative if not_an_image(tuple(r.split("/")))]
    assert skipped and not any(r.lower().endswith((".dcm", ".png", ".jpg")) for r in skipped)
    assert result.summary.skipped_non_image_files.n == len(skipped)
    assert not set(skipped) & seen
    missing = [r for r in relative if r not in seen and r not in skipped]
    # dicomdirtests/77654033/... (the folder is the PatientID) and test-SR.dcm (PatientName Test^...) are written
    # scrubbed ([patient]): every file is still accounted for, under its scrubbed path
    scrubbed = [p for p in seen if "[patient" in p]
    assert len(missing) == len(scrubbed) == result.summary.patient_identifiers_in_file_names.n
    assert (rejects["reason"] != "").all() and (rejects["detail"] != "").all()
    assert len(manifest) >= 60
    assert {"not_dicom", "no_pixel_data", "constant_image", "truncated"} <= set(rejects["reason"])
    # compressed syntaxes decoded: RLE, JPEG baseline/lossless, JPEG-LS, JPEG 2000
    syntaxes = set(manifest["transfer_syntax"])
    for uid in ("1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.70", "1.2.840.10008.1.2.4.80",
                "1.2.840.10008.1.2.4.90"):
        assert uid in syntaxes, uid
