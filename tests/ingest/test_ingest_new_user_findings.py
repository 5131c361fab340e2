"""Issue 11, new-user trial (ingest findings 1, 6, 11, 12, 13, 14, 17): nothing lost, merged or relabelled silently.

Every test builds its own small collection (real PNG/DICOM files, real CSVs) and runs the real ingest.
"""

import json
import unicodedata
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline.cli import main
from pipeline.errors import ConfigError
from pipeline.ingest import IngestConfig, MetadataMapping, run
from pipeline.ingest.config import load_ingest_config
from pipeline.ingest.summary import confounding
from pipeline.manifest import read_manifest
from pipeline.report.provenance import REDACTED, redact
from tests.helpers.ingest_factory import phantom, write_cxr

NFD_SUD = unicodedata.normalize("NFD", "Hôpital Sud")  # 'o' + combining circumflex: looks the same, other bytes


def _png(path: Path, seed: int) -> None:
    image, _ = phantom(24, 20, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((image * 255).astype(np.uint8)).save(path)


def _collection(root: Path, rows: list[tuple[str, str, str]], *, header: str = "file,label,site") -> Path:
    """PNGs named in ``rows`` (file, label, site; distinct pixels) and their CSV beside the folder."""
    for i, (name, _, _) in enumerate(rows):
        _png(root / name, seed=100 + i)
    csv = root.parent / f"{root.name}.csv"
    csv.write_text(header + "\n" + "".join(f"{f},{lab},{s}\n" for f, lab, s in rows), encoding="utf-8")
    return csv


def _mapping(**update) -> MetadataMapping:
    base = {"file_column": "file", "label_column": "label", "positive_values": ["1"], "negative_values": ["0"],
            "site_column": "site"}
    return MetadataMapping(**{**base, **update})


# 1. one value, one spelling
def test_site_spellings_differing_in_case_whitespace_or_unicode_form_are_one_site(tmp_path, capsys):
    sites = ["Hôpital Sud"] * 3 + ["hôpital  sud "] * 2 + [NFD_SUD] + ["Nord"] * 6
    csv = _collection(tmp_path / "src", [(f"x{i}.png", str(i % 2), s) for i, s in enumerate(sites)])
    config = IngestConfig(metadata_mapping=_mapping(), splits={"test_sites": ["HÔPITAL SUD"]})
    result = run(source=tmp_path / "src", metadata=csv, out=tmp_path / "out", config=config, size=16, progress=False)
    frame = read_manifest(result.out)
    assert sorted(set(frame["site"])) == ["Hôpital Sud", "Nord"]
    assert (frame.loc[frame["site"] == "Hôpital Sud", "split"] == "test").sum() == 6  # every variant held out
    assert set(frame.loc[frame["site"] == "Nord", "split"]) <= {"train", "val"}
    merged = result.summary.merged_spellings["site"]
    assert merged == {"Hôpital Sud": sorted(["hôpital sud", NFD_SUD])}
    assert result.summary.merged_spelling_images["site"] == {"hôpital sud": 2, NFD_SUD: 1}
    assert ("splits.test_sites", "HÔPITAL SUD", "Hôpital Sud") in \
        {(r.key, r.given, r.resolved) for r in result.summary.config_names_resolved}
    err = capsys.readouterr().err
    assert "merged spellings of site" in err and "'hôpital sud' (2 images)" in err and "-> 'Hôpital Sud'" in err


def test_site_map_value_is_the_preferred_spelling_and_dicom_sites_merge(tmp_path):
    # a CSV names one hospital 'north' and the site_map turns another's raw name into 'North': one site, 'North'
    csv = _collection(tmp_path / "src", [("a.png", "0", "north"), ("b.png", "1", "north"), ("c.png", "1", "north"),
                                         ("d.png", "0", "Nordklinik"), ("e.png", "1", "South")])
    config = IngestConfig(metadata_mapping=_mapping(), site_map={"nordklinik": "North"})
    result = run(source=tmp_path / "src", metadata=csv, out=tmp_path / "out", config=config, size=16, progress=False)
    assert sorted(set(read_manifest(result.out)["site"])) == ["North", "South"]
    assert result.summary.merged_spellings["site"] == {"North": ["north"]}
    # DICOM InstitutionName spelled three ways: one training domain
    for i, name in enumerate(["Site One", "site one", "SITE  ONE", "Site Two"]):
        write_cxr(tmp_path / "dcm" / f"{i}.dcm", seed=i, institution=name)
    result = run(source=tmp_path / "dcm", out=tmp_path / "out_dcm", config=IngestConfig(), size=16, progress=False)
    frame = read_manifest(result.out)
    assert sorted(set(frame["domain"])) == ["Site One", "Site Two"]
    assert result.summary.merged_spellings["site"] == {"Site One": ["SITE ONE", "site one"]}


def test_view_values_differing_in_case_are_merged_to_the_most_frequent(tmp_path):
    rows = [(f"v{i}.png", str(i % 2), "s") for i in range(5)]
    csv = tmp_path / "src.csv"
    _collection(tmp_path / "src", rows)
    views = ["PA", "PA", "PA", "postero", "postero"]
    csv.write_text("file,label,site,view\n" + "".join(f"{f},{lab},{s},{v}\n" for (f, lab, s), v in zip(rows, views, strict=True)))
    config = IngestConfig(metadata_mapping=_mapping(view_columns=["view"]), view_map={"PA": "PA", "POSTERO": "pa"})
    result = run(source=tmp_path / "src", metadata=csv, out=tmp_path / "out", config=config, size=16, progress=False)
    assert set(read_manifest(result.out)["view"]) == {"PA"}
    assert result.summary.merged_spellings["view"] == {"PA": ["pa"]}


# 6. identical pixels, opposite labels
def test_identical_pixels_with_conflicting_labels_reject_every_copy_naming_the_others(tmp_path, capsys):
    src = tmp_path / "src"
    for i in range(6):
        _png(src / f"u{i}.png", seed=i)
    for name, seed in (("a/f1.png", 50), ("a/f1_copy.png", 50), ("b/f1_again.png", 50),  # 0, 1, 0: conflict
                       ("g.png", 60), ("g_copy.png", 60),  # 1, 1: agreeing copies stay
                       ("h.png", 70), ("h_copy.png", 70)):  # 0 and unknown: no known disagreement, stay
        _png(src / name, seed=seed)
    labels = {"a/f1.png": "0", "a/f1_copy.png": "1", "b/f1_again.png": "0", "g.png": "1", "g_copy.png": "1",
              "h.png": "0", "h_copy.png": "", **{f"u{i}.png": str(i % 2) for i in range(6)}}
    (tmp_path / "l.csv").write_text("file,label\n" + "".join(f"{k},{v}\n" for k, v in labels.items()))
    config = IngestConfig(metadata_mapping=_mapping(site_column=None, site_constant="one"))
    result = run(source=src, metadata=tmp_path / "l.csv", out=tmp_path / "out", config=config, size=16, progress=False)
    rejects = pd.read_csv(result.out / "rejects.csv", keep_default_na=False).set_index("path")
    conflicting = rejects[rejects["reason"] == "conflicting_duplicate_labels"]
    assert sorted(conflicting.index) == ["a/f1.png", "a/f1_copy.png", "b/f1_again.png"]
    assert "'a/f1_copy.png' (label 1)" in conflicting.loc["a/f1.png", "detail"]
    assert "'b/f1_again.png' (label 0)" in conflicting.loc["a/f1.png", "detail"]
    frame = read_manifest(result.out)
    assert not set(conflicting.index) & set(frame["path"])
    assert {"g.png", "g_copy.png", "h.png", "h_copy.png"} <= set(frame["path"])
    assert (result.summary.duplicates.groups, result.summary.duplicates.images) == (2, 4)
    assert (result.summary.conflicting_duplicate_labels.groups, result.summary.conflicting_duplicate_labels.images) \
        == (1, 3)
    assert "3 files in 1 group of identical pixels carry conflicting labels" in capsys.readouterr().err


# 11. a warning driven by 'unknown' says so
def _confounding_frame(position: list[str], labels: list[int], collection: list[str]) -> tuple[pd.DataFrame, pd.Series]:
    n = len(labels)
    frame = pd.DataFrame({"position": position, "view": ["PA"] * n, "age_group": ["adult"] * n,
                          "site": ["s"] * n, "domain": ["s"] * n, "label": pd.array(labels, dtype="Int64")})
    return frame, pd.Series(collection)


def test_a_warning_driven_by_unknown_names_the_levels_the_missingness_and_where(tmp_path):
    # erect images are mostly negative, the 'unknown' ones (a collection without the field) mostly positive
    position = ["erect"] * 30 + ["unknown"] * 20
    labels = [1] * 5 + [0] * 25 + [1] * 18 + [0] * 2
    frame, coll = _confounding_frame(position, labels, ["colA"] * 30 + ["colB"] * 20)
    out = confounding(frame, shortcut_attributes=["position"], min_group_size=20, warning_auroc=0.6,
                      warning_lift=0.15, collections=coll)
    warning = next(w for w in out["warnings"] if w.startswith("position alone predicts"))
    assert "erect 30 images, 17% positive" in warning and "unknown 20 images, 90% positive" in warning
    assert "mostly because 20 images have position unknown (missing in collection colB: 20)" in warning
    assert "only one known level" in warning
    # known levels that carry the association themselves: levels named, no missingness claim
    position = ["erect"] * 20 + ["supine"] * 20 + ["unknown"] * 10
    labels = [0] * 18 + [1] * 2 + [1] * 18 + [0] * 2 + [1] * 5 + [0] * 5
    frame, coll = _confounding_frame(position, labels, ["colA"] * 50)
    out = confounding(frame, shortcut_attributes=["position"], min_group_size=20, warning_auroc=0.6,
                      warning_lift=0.15, collections=coll)
    warning = next(w for w in out["warnings"] if w.startswith("position alone predicts"))
    assert "supine 20 images, 90% positive" in warning and "mostly because" not in warning


# 12. files that are plainly not images
def test_tables_documents_and_hidden_files_under_source_are_skipped_and_counted_not_rejected(tmp_path, capsys):
    src = tmp_path / "src"
    for i in range(3):
        _png(src / f"x{i}.png", seed=i)
    write_cxr(src / "noext_dicom", seed=7)  # no suffix: may be DICOM, so still tried (and kept)
    for name in ("labels.csv", "notes.TXT", "export.xlsx", "sub/readme.md", ".DS_Store", "Thumbs.db", "a.zip"):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(b"file,label\nx0.png,1\nx1.png,0\nx2.png,1\nnoext_dicom,0\n")
    (src / "junk").write_bytes(b"not an image at all")  # no suffix, not DICOM: tried and rejected
    mapping = _mapping(site_column=None, site_constant="one")
    result = run(source=src, metadata=src / "labels.csv", out=tmp_path / "out",
                 config=IngestConfig(metadata_mapping=mapping), size=16, progress=False)
    skipped = result.summary.skipped_non_image_files
    assert skipped.n == 7 and "labels.csv" in skipped.examples
    rejects = pd.read_csv(result.out / "rejects.csv", keep_default_na=False)
    assert list(rejects["path"]) == ["junk"] and result.summary.n_rejected == 1
    assert "noext_dicom" in set(read_manifest(result.out)["path"])
    assert "skipped 7 files that are not images" in capsys.readouterr().err


# 13. every name resolved only by ignoring case/whitespace is listed; errors show the data's spelling
def test_column_site_map_label_and_site_names_resolved_by_case_are_all_listed(tmp_path, capsys):
    csv = _collection(tmp_path / "src", [(f"x{i}.png", "Covid" if i % 2 else "normal", s)
                                         for i, s in enumerate(["Hôpital Nord", "East  General"] * 3)],
                      header="File ,Finding,Location")
    mapping = _mapping(file_column="file", label_column="finding ", site_column="LOCATION",
                       positive_values=["COVID"], negative_values=["normal"])
    config = IngestConfig(metadata_mapping=mapping, site_map={"HÔPITAL NORD": "nord", "east general": "east"},
                          splits={"test_sites": ["EAST"]})
    result = run(source=tmp_path / "src", metadata=csv, out=tmp_path / "out", config=config, size=16, progress=False)
    resolved = {(r.key, r.given, r.resolved) for r in result.summary.config_names_resolved}
    assert {("metadata_mapping.file_column", "file", "File "), ("metadata_mapping.label_column", "finding ", "Finding"),
            ("metadata_mapping.site_column", "LOCATION", "Location"), ("site_map", "HÔPITAL NORD", "Hôpital Nord"),
            ("site_map", "east general", "East General"), ("metadata_mapping.positive_values", "COVID", "Covid"),
            ("splits.test_sites", "EAST", "east")} <= resolved
    err = capsys.readouterr().err
    assert "config site_map: 'HÔPITAL NORD' matched 'Hôpital Nord'" in err
    assert "config metadata_mapping.label_column: 'finding ' matched 'Finding'" in err
    with pytest.raises(ConfigError, match=r"whitespace collapsed\): \['East General', 'Hôpital Nord'\]"):
        run(source=tmp_path / "src", metadata=csv, out=tmp_path / "out2", progress=False,
            config=config.model_copy(update={"site_map": {"east genral": "east"}}))


# 14. error messages that point at the fix
def test_semicolon_csv_error_suggests_the_separator_key(tmp_path):
    _png(tmp_path / "src" / "a.png", seed=1)
    (tmp_path / "m.csv").write_text("file;label;site\na.png;1;x\n")
    with pytest.raises(ConfigError, match=r"looks ';'-separated.*separator: \";\""):
        run(source=tmp_path / "src", metadata=tmp_path / "m.csv", out=tmp_path / "out",
            config=IngestConfig(metadata_mapping=_mapping()), progress=False)


def test_positive_value_typo_lists_each_sources_label_values_as_spelled(tmp_path):
    _collection(tmp_path / "a", [("x.png", "covid-19", "s"), ("y.png", "Normal", "s")])
    _collection(tmp_path / "b", [("z.png", "0", "t"), ("w.png", "1", "t")])
    config = tmp_path / "two.yaml"
    config.write_text(
        "sources:\n"
        "  - {name: a, path: a, metadata: a.csv, metadata_mapping: {file_column: file, label_column: label,\n"
        "     site_column: site, positive_values: [COVID19], negative_values: [normal]}}\n"
        "  - {name: b, path: b, metadata: b.csv, metadata_mapping: {file_column: file, label_column: label,\n"
        "     site_column: site, positive_values: ['1'], negative_values: ['0']}}\n"
    )
    with pytest.raises(ConfigError) as info:
        run(config=config, out=tmp_path / "out", progress=False)
    text = str(info.value)
    assert "['COVID19']" in text and "source 'a'" in text and "['Normal', 'covid-19']" in text
    assert "source 'b'" in text and "['0', '1']" in text and "COVID-19" not in text


def test_sources_config_given_a_source_names_only_what_was_given(tmp_path, capsys):
    _collection(tmp_path / "a", [("x.png", "1", "s")])
    config = tmp_path / "one.yaml"
    config.write_text("sources:\n  - {path: a}\n")
    assert main(["ingest", str(tmp_path / "a"), "--config", str(config), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "got SOURCE=" in err and "None" not in err and "--metadata=" not in err


# 17. the config's name and what provenance hides
def test_a_config_without_name_is_named_after_its_file_and_column_names_are_not_redacted(tmp_path):
    _collection(tmp_path / "a", [("x.png", "1", "s"), ("y.png", "0", "s")])
    config = tmp_path / "my_cohort.yaml"
    config.write_text("sources:\n  - {path: a, metadata: a.csv, metadata_mapping: {file_column: file,\n"
                      "     site_column: site, label_column: label, positive_values: ['1'], negative_values: ['0'],\n"
                      "     age_from_birth: {birth_column: site, date_column: site}}}\n")
    assert load_ingest_config(config).name == "my_cohort"
    named = tmp_path / "named.yaml"
    named.write_text("name: cohort_x\n")
    assert load_ingest_config(named).name == "cohort_x"
    result = run(config=config, out=tmp_path / "out", size=16, progress=False)
    stage = json.loads((result.out / "stage.json").read_text())
    assert stage["config"]["name"] == "my_cohort"
    shown = redact(stage["config"])
    assert shown["sources"][0]["metadata_mapping"]["age_from_birth"] == {"birth_column": "site", "date_column": "site"}
    assert redact({"patient_salt": "s", "PatientBirthDate": "19700101"}) == {"patient_salt": REDACTED,
                                                                           "PatientBirthDate": REDACTED}
