"""Third new-user trial, ingest findings 2, 3, 4, 9, 10: duplicate CSV rows compared as one spelling, patient values
scrubbed from every message quoting a header or CSV value, every input path checked first (exit 2 naming it), YAML
numbers/booleans in label lists, and unknown photometric interpretations."""

import csv
import unicodedata
from pathlib import Path

import pydicom
import pytest

from pipeline.cli import main
from pipeline.errors import ConfigError, DataError
from pipeline.ingest import IngestConfig, MetadataMapping, run
from pipeline.ingest.config import load_ingest_config
from pipeline.manifest import read_manifest
from tests.helpers.ingest_factory import write_cxr


def _edit(path: Path, **tags: str) -> None:
    """Rewrite header elements of a written DICOM (PatientName, Modality, PhotometricInterpretation...)."""
    ds = pydicom.dcmread(path)
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)


def _rejects(out: Path) -> list[dict[str, str]]:
    with (out / "rejects.csv").open(encoding="utf-8") as fp:
        return list(csv.DictReader(fp))


def _mapping(**extra) -> MetadataMapping:
    return MetadataMapping(file_column="file", label_column="label", positive_values=["1"], negative_values=["0"],
                           **extra)


# -- finding 2: duplicate rows of one file agree when they differ only by case / whitespace / Unicode form


def test_duplicate_rows_differing_in_case_whitespace_or_unicode_form_agree(tmp_path):
    src = tmp_path / "src"
    for i in range(4):
        write_cxr(src / f"f{i}.dcm", seed=i)
    nfc = unicodedata.normalize("NFC", "Hôpital Sud")
    nfd = unicodedata.normalize("NFD", "Hôpital Sud")
    rows = ["file,label,site,sex",
            "f0.dcm,1,Beta,M", "f0.dcm,1,beta,M",  # case only
            f"f1.dcm,0,{nfc},F", f"f1.dcm,0,{nfd},F",  # Unicode form only
            "f2.dcm,1, Alpha  Site ,M", "f2.dcm,1,ALPHA SITE,m",  # whitespace and case
            "f3.dcm,0,Gamma,M", "f3.dcm,0,Delta,M"]  # a real disagreement stays one
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    config = IngestConfig(metadata_mapping=_mapping(site_column="site", sex_column="sex"))
    result = run(source=src, metadata=tmp_path / "m.csv", out=tmp_path / "out", config=config, size=16,
                 progress=False, workers=1)
    kept = set(read_manifest(result.out)["path"])
    assert kept == {"f0.dcm", "f1.dcm", "f2.dcm"}
    rejects = _rejects(result.out)
    assert [(r["path"], r["reason"]) for r in rejects] == [("f3.dcm", "conflicting_metadata_rows")]
    assert "'Gamma' vs 'Delta'" in rejects[0]["detail"]
    assert result.summary.metadata_duplicate_rows == 3


# -- finding 3: a header or CSV value equal to a patient name part / ID / birth date is '<patient>' in every message


def test_header_values_repeating_patient_data_are_scrubbed_from_reject_details(tmp_path):
    src = tmp_path / "src"
    write_cxr(src / "mod.dcm", seed=1)
    _edit(src / "mod.dcm", PatientName="Zyxwv^Quentin", Modality="Quentin")
    write_cxr(src / "photo.dcm", seed=2)
    _edit(src / "photo.dcm", PatientName="Zyxwv^Quentin", PatientBirthDate="19610203",
          PhotometricInterpretation="19610203")
    write_cxr(src / "idmod.dcm", seed=3, patient_id="Mrnqzx991")
    _edit(src / "idmod.dcm", Modality="Mrnqzx991")
    for i in range(4, 7):
        write_cxr(src / f"ok{i}.dcm", seed=i)
    result = run(source=src, out=tmp_path / "out", config=IngestConfig(modalities=["CR", "DX"]), size=16,
                 progress=False, workers=1)
    by_path = {r["path"]: r for r in _rejects(result.out)}
    assert by_path["mod.dcm"]["reason"] == "wrong_modality"
    assert by_path["photo.dcm"]["reason"] == "unsupported_photometric"
    assert by_path["idmod.dcm"]["reason"] == "wrong_modality"
    for name in ("mod.dcm", "photo.dcm", "idmod.dcm"):
        assert "<patient>" in by_path[name]["detail"], by_path[name]
    for path in [p for p in result.out.rglob("*") if p.is_file()]:
        data = path.read_bytes().lower()
        for secret in (b"quentin", b"19610203", b"mrnqzx991"):
            assert secret not in data, (path.name, secret)


def test_csv_values_repeating_the_patient_column_are_scrubbed(tmp_path, capsys):
    src = tmp_path / "src"
    names = ["a.dcm", "b.dcm", "c.dcm", "d.dcm", "e.dcm"]
    for i, name in enumerate(names):
        write_cxr(src / name, seed=i)
    # b: its label cell repeats its patient value; c: two rows disagree on a site that is the patient value;
    # d: its CSV modality is its patient value (not an allowed modality)
    rows = ["file,label,pid,site,modality", "a.dcm,1,P1,North,DX", "b.dcm,Pkrvxa,Pkrvxa,North,DX",
            "c.dcm,1,Plmqwe,North,DX", "c.dcm,1,Plmqwe,Plmqwe,DX", "d.dcm,0,Pzzqrt,North,Pzzqrt",
            "e.dcm,0,P5,North,DX"]
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    config = IngestConfig(modalities=["CR", "DX"], metadata_mapping=_mapping(
        patient_column="pid", site_column="site", modality_column="modality"))
    result = run(source=src, metadata=tmp_path / "m.csv", out=tmp_path / "out", config=config, size=16,
                 progress=False, workers=1)
    by_path = {r["path"]: r for r in _rejects(result.out)}
    assert {k: v["reason"] for k, v in by_path.items()} == {
        "b.dcm": "label_unmapped", "c.dcm": "conflicting_metadata_rows", "d.dcm": "wrong_modality"}
    assert all("<patient>" in r["detail"] for r in by_path.values()), by_path
    err = capsys.readouterr().err.lower()
    for secret in ("pkrvxa", "plmqwe", "pzzqrt"):
        assert secret not in err
        for path in [p for p in result.out.rglob("*") if p.is_file()]:
            assert secret.encode() not in path.read_bytes().lower(), (path.name, secret)


# -- finding 4: every user-given input path is checked first, exit 2 naming the parameter


def test_missing_metadata_csv_is_a_data_error_naming_the_option(tmp_path, capsys):
    src = tmp_path / "src"
    write_cxr(src / "a.dcm", seed=1)
    config = IngestConfig(metadata_mapping=_mapping())
    with pytest.raises(DataError, match=r"--metadata must be a CSV file.*nope\.csv.*not found"):
        run(source=src, metadata=tmp_path / "nope.csv", out=tmp_path / "o1", config=config, progress=False)
    assert not (tmp_path / "o1").exists()  # checked before any work
    yaml = tmp_path / "c.yaml"
    yaml.write_text("metadata_mapping: {file_column: file, label_column: label, positive_values: ['1']}\n",
                    encoding="utf-8")
    code = main(["ingest", str(src), "--metadata", str(tmp_path / "nope.csv"), "--config", str(yaml),
                 "--out", str(tmp_path / "o2")])
    assert code == 2 and "--metadata" in capsys.readouterr().err


def test_missing_paths_of_a_source_entry_name_the_entry(tmp_path, capsys):
    for name in ("srcA", "srcB"):
        write_cxr(tmp_path / name / "a.dcm", seed=1)
    (tmp_path / "a.csv").write_text("file,label\na.dcm,1\n", encoding="utf-8")
    mapping = "metadata_mapping: {file_column: file, label_column: label, positive_values: ['1']}\n"
    config = tmp_path / "multi.yaml"
    config.write_text(mapping + "sources:\n  - {name: srcA, path: srcA, metadata: a.csv}\n"
                      "  - {name: srcB, path: srcB, metadata: gone.csv}\n", encoding="utf-8")
    assert main(["ingest", "--config", str(config), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "sources[srcB].metadata" in err and "gone.csv" in err and "Traceback" not in err
    config.write_text(mapping + "sources:\n  - {name: srcA, path: srcA, metadata: a.csv}\n"
                      "  - {name: srcC, path: missing_dir, metadata: a.csv}\n", encoding="utf-8")
    assert main(["ingest", "--config", str(config), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "sources[srcC].path" in err and "missing_dir" in err
    assert not (tmp_path / "o").exists()


# -- finding 9: YAML numbers are their text; YAML booleans are an error asking to quote them


def _config(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(body, encoding="utf-8")
    return path


def test_yaml_numbers_in_label_lists_and_keys_are_their_text(tmp_path):
    config = load_ingest_config(_config(tmp_path, (
        "metadata_mapping: {file_column: file, label_column: label, positive_values: [1], negative_values: [0, 2.5],"
        " modality_map: {7: DX}}\n"
        "site_map: {3: Third, 12: 4}\nview_map: {1: PA}\nmodalities: [DX, 9]\n"
        "splits: {test_sites: [Third], ood_val_sites: [4]}\n")))
    mapping = config.metadata_mapping
    assert mapping.positive_values == ["1"] and mapping.negative_values == ["0", "2.5"]
    assert mapping.modality_map == {"7": "DX"}
    assert config.site_map == {"3": "Third", "12": "4"} and config.view_map == {"1": "PA"}
    assert config.modalities == ["DX", "9"] and config.splits.ood_val_sites == ["4"]


@pytest.mark.parametrize(("written", "word"), [("[YES]", "'yes'"), ("[No]", "'no'"), ("[on, '1']", "'yes'")])
def test_yaml_booleans_in_label_lists_ask_to_quote_them(tmp_path, written, word):
    path = _config(tmp_path, "metadata_mapping: {file_column: file, label_column: label, positive_values: "
                   f"{written}}}\n")
    with pytest.raises(ConfigError) as caught:
        load_ingest_config(path)
    message = str(caught.value)
    assert "quote it" in message and word in message and "positive_values" in message
    assert "age_column" not in message and "valid string" not in message  # no unrelated mapping keys


def test_yaml_boolean_site_map_key_asks_to_quote_it(tmp_path):
    with pytest.raises(ConfigError, match="quote it") as caught:
        load_ingest_config(_config(tmp_path, "site_map: {off: Offsite}\n"))
    assert "site_map" in str(caught.value) and "site_tag" not in str(caught.value)


# -- finding 10: any photometric interpretation we do not convert is unsupported_photometric naming it


@pytest.mark.parametrize("mode", ["FOO", "CMYK", "HSV"])
def test_unknown_photometric_interpretation_is_unsupported_photometric(tmp_path, mode):
    src = tmp_path / "src"
    write_cxr(src / "odd.dcm", seed=1)
    _edit(src / "odd.dcm", PhotometricInterpretation=mode)
    for i in range(2, 4):
        write_cxr(src / f"ok{i}.dcm", seed=i)
    result = run(source=src, out=tmp_path / "out", config=IngestConfig(), size=16, progress=False, workers=1)
    rejects = _rejects(result.out)
    assert [(r["path"], r["reason"]) for r in rejects] == [("odd.dcm", "unsupported_photometric")]
    assert f"PhotometricInterpretation '{mode}'" in rejects[0]["detail"]
    assert len(read_manifest(result.out)) == 2
