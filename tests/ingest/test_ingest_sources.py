"""Real collections (issue 11 A, items 6-8): fields from file-name patterns, several sources in one ingest,
configurable shortcut attributes, and a confounding measure that sees prevalence gaps."""

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from pipeline.cli import main
from pipeline.errors import ConfigError
from pipeline.ingest import IngestConfig, MetadataMapping, run
from pipeline.ingest.confounding import measure_factor
from pipeline.ingest.summary import confounding
from pipeline.manifest import read_manifest
from tests.helpers.ingest_factory import phantom


def _pngs(folder: Path, names: list[str], seed0: int = 0) -> None:
    for i, name in enumerate(names):
        image, _ = phantom(24, 20, seed0 + i)
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((image * 255).astype(np.uint8)).save(folder / name)


# 6a. path_fields
def test_site_from_a_file_name_pattern_unmatched_files_unknown_and_counted(tmp_path, capsys):
    names = ["CR.1.2.840.1.png", "CR.1.2.840.2.png", "DX.1.2.840.3.png", "XA.1.2.840.4.png"]
    _pngs(tmp_path / "src", names)
    config = IngestConfig(path_fields={"site": r"^(?P<site>CR|DX)\."}, site_map={"cr": "north"})
    result = run(source=tmp_path / "src", out=tmp_path / "out", config=config, size=16, progress=False)
    frame = read_manifest(result.out).set_index("path")
    assert frame["site"].to_dict() == {"CR.1.2.840.1.png": "north", "CR.1.2.840.2.png": "north",
                                       "DX.1.2.840.3.png": "DX", "XA.1.2.840.4.png": "unknown"}
    assert frame.loc["XA.1.2.840.4.png", "site_source"] == "path:site:unmatched"
    info = result.summary.path_fields["site"]
    assert (info.matched, info.unmatched, info.unmatched_examples) == (3, 1, ["XA.1.2.840.4.png"])
    assert "path_fields site: 1 files not matched" in capsys.readouterr().err


def test_a_path_pattern_matching_no_file_or_without_its_group_is_a_config_error(tmp_path):
    _pngs(tmp_path / "src", ["a.png", "b.png"])
    with pytest.raises(ConfigError, match="path_fields.site must match some file"):
        run(source=tmp_path / "src", out=tmp_path / "out", config=IngestConfig(path_fields={"site": "^(?P<site>CR)"}),
            progress=False)
    config = tmp_path / "c.yaml"
    config.write_text("path_fields: {site: '^(CR|DX)'}\n")
    assert main(["ingest", str(tmp_path / "src"), "--out", str(tmp_path / "o"), "--config", str(config)]) == 2


# 6b. sources
def _two_collections(tmp_path: Path) -> Path:
    _pngs(tmp_path / "covid", ["x1.png", "x2.png", "sub/x3.png"])
    (tmp_path / "covid.csv").write_text("filename,finding\nx1.png,COVID-19\nx2.png,normal\nx3.png,COVID-19\n")
    _pngs(tmp_path / "hosp", ["x1.png", "y.png"], seed0=10)
    (tmp_path / "hosp.csv").write_text("file,label\nx1.png,0\ny.png,1\nmissing.png,1\n")
    config = tmp_path / "multi.yaml"
    config.write_text(
        "sources:\n"
        "  - {name: covid, path: covid, metadata: covid.csv, site_constant: Cohen,\n"
        "     metadata_mapping: {file_column: filename, match: basename, label_column: finding,\n"
        "                        positive_values: [COVID-19], negative_values: [normal]}}\n"
        "  - path: hosp\n"
        "    metadata: hosp.csv\n"
        "    metadata_mapping: {file_column: file, label_column: label, positive_values: ['1'],\n"
        "                       negative_values: ['0'], site_constant: hospital_b}\n"
        "splits: {test_sites: [hospital_b]}\n"
    )
    return config


def test_two_sources_combine_with_prefixed_paths_and_their_own_sites(tmp_path, capsys):
    config = _two_collections(tmp_path)
    assert main(["ingest", "--config", str(config), "--out", str(tmp_path / "out"), "--size", "16"]) == 0
    frame = read_manifest(tmp_path / "out").set_index("path")
    assert frame["site"].to_dict() == {"covid/x1.png": "Cohen", "covid/x2.png": "Cohen",
                                       "covid/sub/x3.png": "Cohen", "hosp/x1.png": "hospital_b",
                                       "hosp/y.png": "hospital_b"}
    assert frame["label"].to_dict() == {"covid/x1.png": 1, "covid/x2.png": 0, "covid/sub/x3.png": 1,
                                        "hosp/x1.png": 0, "hosp/y.png": 1}
    assert set(frame.loc[frame["site"] == "hospital_b", "split"]) == {"test"}
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert [s["name"] for s in summary["sources"]] == ["covid", "hosp"]
    assert summary["metadata_rows"] == 6 and summary["metadata_rows_without_image"] == {"n": 1, "examples": ["missing.png"]}
    assert "inputs unchanged" not in capsys.readouterr().err
    # every source is in the reuse hash: unchanged -> reused; a touched file in the second source -> re-ingested
    assert main(["ingest", "--config", str(config), "--out", str(tmp_path / "out"), "--size", "16"]) == 0
    assert "inputs unchanged" in capsys.readouterr().err
    os.utime(tmp_path / "hosp" / "y.png", ns=(1, 1))
    assert main(["ingest", "--config", str(config), "--out", str(tmp_path / "out"), "--size", "16"]) == 0
    assert "inputs unchanged" not in capsys.readouterr().err


def test_sources_with_a_source_argument_or_neither_is_an_error(tmp_path, capsys):
    config = _two_collections(tmp_path)
    assert main(["ingest", str(tmp_path / "covid"), "--config", str(config), "--out", str(tmp_path / "o")]) == 2
    assert "must be omitted" in capsys.readouterr().err
    assert main(["ingest", "--out", str(tmp_path / "o")]) == 2
    assert "SOURCE must be given" in capsys.readouterr().err


# 7. shortcut attributes
def test_shortcut_attributes_recorded_and_measured_with_unknown_shown(tmp_path):
    names = [f"{'AP' if i % 2 else 'PA'}_{i}.png" for i in range(8)]
    _pngs(tmp_path / "src", names)
    rows = [f"{n},{'1' if i % 2 else '0'},{n[:2]}" for i, n in enumerate(names)]
    (tmp_path / "m.csv").write_text("file,label,view\n" + "\n".join(rows) + "\n")
    mapping = MetadataMapping(file_column="file", label_column="label", positive_values=["1"], negative_values=["0"],
                              view_columns=["view"], site_constant="s")
    config = IngestConfig(metadata_mapping=mapping, shortcut_attributes=["View", "position"])
    result = run(source=tmp_path / "src", out=tmp_path / "out", metadata=tmp_path / "m.csv", config=config,
                 size=16, progress=False)
    assert result.summary.shortcut_attributes == ["view", "position"]
    factors = {(f.factor, f.scope): f for f in result.summary.confounding.factors}
    assert factors[("view", "all")].auroc == 1.0 and factors[("view", "site=s")].n == 8
    # AP has no position keyword: position is 'unknown' for those rows, counted, not dropped
    levels = {k: (v.n, v.n_pos, v.prevalence) for k, v in factors[("position", "all")].levels.items()}
    assert levels == {"erect": (4, 0, 0.0), "unknown": (4, 4, 1.0)}
    assert result.summary.confounding.p_label_given_attribute_per_site["view"]["s"]["AP"].p_label == 1.0
    assert any(w.startswith("view alone predicts the label") for w in result.summary.confounding.warnings)


# 8. the measure
def test_factor_auroc_sees_a_prevalence_gap_the_majority_lift_misses():
    values = pd.Series(["a"] * 100 + ["b"] * 100)
    labels = np.array([1] * 59 + [0] * 41 + [1] * 92 + [0] * 8)
    m = measure_factor(values, labels, min_n=20)
    assert m["lift"] == 0.0  # both sites' majority label is positive
    # by hand: P(score_pos > score_neg) + 0.5 P(tie) = (92*41 + 0.5*(59*41 + 92*8)) / (151*49)
    assert m["auroc"] == pytest.approx((92 * 41 + 0.5 * (59 * 41 + 92 * 8)) / (151 * 49), abs=1e-4)
    assert m["auroc_ci95"][0] > 0.5 and m["chi2_p_value"] < 1e-6
    # Bergsma (2013) bias correction of a 2 x 2 table of 200 rows: (phi2 - 1/199) / (2 - 1/199 - 1)
    corrected = (_chi2_by_hand(values, labels) / 200 - 1 / 199) / (1 - 1 / 199)
    assert m["cramers_v"] == pytest.approx(np.sqrt(corrected), abs=1e-4)
    assert m["cramers_v_ci95"][0] < m["cramers_v"] < m["cramers_v_ci95"][1]


def _chi2_by_hand(values: pd.Series, labels: np.ndarray) -> float:
    table = pd.crosstab(values, labels).to_numpy().astype(float)
    expected = table.sum(1, keepdims=True) * table.sum(0, keepdims=True) / table.sum()
    return float(((table - expected) ** 2 / expected).sum())


def test_confounding_is_strict_json_for_empty_one_class_and_small_scopes():
    frame = pd.DataFrame({
        "site": ["a", "a", "b", "b", "c"], "domain": ["a", "a", "b", "b", "c"], "position": ["erect"] * 4 + ["supine"],
        "view": ["PA", "AP", "PA", "AP", "PA"], "age_group": ["adult"] * 5,
        "label": pd.array([1, 0, 1, 1, pd.NA], dtype="Int64"),
    })
    out = confounding(frame, shortcut_attributes=["position", "view"], min_group_size=20, warning_auroc=0.6,
                      warning_lift=0.15)
    text = json.dumps(out, allow_nan=False)  # raises on NaN/Infinity
    factors = {(f["factor"], f["scope"]): f for f in out["factors"]}
    assert factors[("view", "site=b")]["auroc"] is None
    assert factors[("view", "site=b")]["not_measured"]["auroc"].startswith("one class only")
    assert factors[("view", "site=c")]["not_measured"]["auroc"] == "no labelled images"
    assert factors[("position", "all")]["not_measured"]["cramers_v"] == "the factor has one value in this scope"
    assert out["n_unlabelled"] == 1 and "site=a: only 2 labelled images" in text


def test_a_normal_only_collection_beside_a_covid_one_is_fine_but_a_value_in_no_csv_is_not(tmp_path):
    _pngs(tmp_path / "covid", ["c1.png", "c2.png"])
    (tmp_path / "covid.csv").write_text("file,finding\nc1.png,COVID-19\nc2.png,COVID-19\n")
    _pngs(tmp_path / "normal", ["n1.png", "n2.png"], seed0=5)
    (tmp_path / "normal.csv").write_text("file,finding\nn1.png,Normal\nn2.png,normal\n")
    mapping = "{file_column: file, label_column: finding, positive_values: [covid-19], negative_values: [NORMAL%s]}"
    entries = "sources:\n  - {path: covid, metadata: covid.csv, site_constant: a}\n" \
              "  - {path: normal, metadata: normal.csv, site_constant: b}\n"
    (tmp_path / "ok.yaml").write_text(entries + "metadata_mapping: " + mapping % "" + "\n")
    result = run(out=tmp_path / "out", config=tmp_path / "ok.yaml", size=16, progress=False)
    assert sorted(read_manifest(result.out)["label"].tolist()) == [0, 0, 1, 1]
    (tmp_path / "bad.yaml").write_text(entries + "metadata_mapping: " + mapping % ", Pneumonia" + "\n")
    with pytest.raises(ConfigError, match=r"negative_values \['Pneumonia'\]"):
        run(out=tmp_path / "out2", config=tmp_path / "bad.yaml", size=16, progress=False)
