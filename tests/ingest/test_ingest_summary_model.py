"""``summary.json`` is exactly its typed model (pipeline.artefacts.ingest_summary.IngestSummary): real ingests (a
synthetic DICOM cohort; PNGs + CSV with rejects, unlabelled rows and merged spellings) load, dump back to the same
JSON, and a broken file is an error naming the file and the field."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline.artefacts.ingest_summary import IngestSummary
from pipeline.errors import DataError
from pipeline.ingest import IngestConfig, MetadataMapping, run
from tests.helpers.ingest_factory import phantom

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def synth_ingest(tmp_path_factory) -> Path:
    from pipeline.synth import run as synth_run

    root = tmp_path_factory.mktemp("synth")
    cohort = synth_run(config=REPO / "configs" / "cohort" / "demo.yaml", out=root / "cohort", n_per_site=6, size=48,
                       counterfactual="position", workers=1, progress=False).out
    return run(source=cohort / "dicom", out=root / "ingest", metadata=cohort / "labels.csv",
               config=REPO / "configs" / "ingest" / "synth_demo.yaml", size=16, workers=1, progress=False).out


@pytest.fixture(scope="module")
def png_ingest(tmp_path_factory) -> Path:
    """Two hospitals ('Hop Sud' also spelled 'hop  sud'), one unreadable file, one file with conflicting CSV rows,
    one CSV row without a file, one blank label, one text file beside the images."""
    root = tmp_path_factory.mktemp("png")
    names = [f"{site}/img{i}.png" for site in ("a", "b") for i in range(6)]
    for i, name in enumerate(names):
        image, _ = phantom(24, 20, i)
        (root / "src" / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 255).astype(np.uint8)).save(root / "src" / name)
    (root / "src" / "notes.txt").write_text("not an image")
    (root / "src" / "a" / "img3.png").write_bytes(b"not a png")
    rows = [f"{name},{'' if i == 2 else ('pos' if i % 2 else 'neg')},"
            f"{('hop  sud' if i == 1 else 'Hop Sud') if name.startswith('a') else 'North'},{'AP' if i % 4 else 'PA'}"
            for i, name in enumerate(names)]
    rows += ["missing.png,pos,North,PA", "b/img1.png,neg,North,AP"]
    (root / "meta.csv").write_text("file,finding,hosp,view\n" + "\n".join(rows) + "\n", encoding="utf-8")
    mapping = MetadataMapping(file_column="file", label_column="finding", positive_values=["pos"],
                              negative_values=["neg"], site_column="hosp", view_columns=["view"])
    config = IngestConfig(metadata_mapping=mapping, splits={"test_sites": ["north"]})
    return run(source=root / "src", out=root / "out", metadata=root / "meta.csv", config=config, size=16,
               workers=1, progress=False).out


@pytest.mark.parametrize("which", ["synth_ingest", "png_ingest"])
def test_summary_json_is_exactly_its_model(which, request):
    out = request.getfixturevalue(which)
    text = (out / "summary.json").read_text(encoding="utf-8")
    summary = IngestSummary.load(out)
    assert summary.to_json_dict() == json.loads(text)
    assert json.dumps(summary.to_json_dict(), indent=2) + "\n" == text  # key order and number spelling too


def test_synth_summary_values(synth_ingest):
    summary = IngestSummary.load(synth_ingest)
    assert summary.schema_version == 1 and summary.n_images == 30 and summary.n_rejected == 0
    assert summary.n_counterfactual == 30 and summary.per_site == {s: 6 for s in ("east", "harbour", "north",
                                                                                   "valley", "west")}
    factors = {(f.factor, f.scope) for f in summary.confounding.factors}
    assert ("position", "site=north") in factors and ("site", "site=north") not in factors  # site per site: no
    assert summary.sources is None and "sources" not in summary.to_json_dict()


def test_png_summary_values(png_ingest):
    summary = IngestSummary.load(png_ingest)
    assert summary.rejects_by_reason == {"conflicting_metadata_rows": 1, "unreadable_image": 1}
    assert summary.n_unlabelled == 1 and summary.confounding.n_labelled == summary.n_images - 1
    assert summary.merged_spellings == {"site": {"Hop Sud": ["hop sud"]}}
    assert summary.merged_spelling_images == {"site": {"hop sud": 1}}
    assert (summary.metadata_rows, summary.metadata_rows_matched) == (14, 13)
    assert summary.metadata_rows_without_image.examples == ["missing.png"]
    assert summary.skipped_non_image_files.examples == ["notes.txt"]
    assert [(r.key, r.given, r.resolved) for r in summary.config_names_resolved] == \
        [("splits.test_sites", "north", "North")]
    written = json.loads((png_ingest / "summary.json").read_text(encoding="utf-8"))
    # a factor's unknown_level: absent unless it warns, then an object or null, as written
    assert [("unknown_level" in f, f.get("unknown_level") is None) for f in written["confounding"]["factors"]] == \
        [("unknown_level" in f.model_fields_set, f.unknown_level is None) for f in summary.confounding.factors]


def test_a_broken_summary_is_an_error_naming_the_file_and_the_field(png_ingest, tmp_path):
    data = json.loads((png_ingest / "summary.json").read_text(encoding="utf-8"))
    data["confounding"]["factors"][0]["auroc"] = "high"
    (tmp_path / "summary.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"summary\.json does not match IngestSummary.*confounding\.factors\.0\.auroc"):
        IngestSummary.load(tmp_path)
    data = {**json.loads((png_ingest / "summary.json").read_text(encoding="utf-8")), "schema_version": 2}
    (tmp_path / "summary.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"schema_version 2, this version of cxr-fishr reads 1"):
        IngestSummary.load(tmp_path)
