"""Public-set mappings (data_manifests/sources) against the real metadata CSVs shipped in torchxrayvision's wheel.

Expected counts are computed here with plain pandas on the raw columns, independently of the harmonisers.
"""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torchxrayvision

from pipeline.errors import ConfigError
from pipeline.ingest.config import IngestConfig, MetadataMapping, load_ingest_config
from pipeline.ingest.csv_source import index_metadata, read_table
from pipeline.ingest.fields import Harmoniser

XRV_DATA = Path(torchxrayvision.__file__).parent / "data"
REPO = Path(__file__).resolve().parents[2]


def _load(name: str) -> IngestConfig:
    return load_ingest_config(REPO / "configs" / "ingest" / f"{name}.yaml")


def table_fields(frame: pd.DataFrame, config: IngestConfig, salt: str) -> pd.DataFrame:
    """The harmonised fields ingest would record for every row of a metadata table (no images)."""
    harmoniser = Harmoniser(config, salt)
    records = [harmoniser.fields(row, None, None, str(i)) for i, row in enumerate(frame.to_dict("records"))]
    return pd.DataFrame.from_records(records, index=frame.index)


def test_nih_mapping_view_sex_age_label_counts_match_the_raw_csv():
    config = _load("nih_chestxray14")
    frame = read_table(XRV_DATA / "Data_Entry_2017_v2020.csv.gz", config.metadata_mapping)
    fields = table_fields(frame, config, salt="t")
    raw = pd.read_csv(XRV_DATA / "Data_Entry_2017_v2020.csv.gz")
    assert fields["view"].value_counts().to_dict() == raw["View Position"].value_counts().to_dict()
    assert fields["view"].value_counts().to_dict() == {"PA": 67310, "AP": 44810}
    assert (fields["sex"] == "M").sum() == (raw["Patient Gender"] == "M").sum()
    assert np.allclose(fields["age_years"].to_numpy(), raw["Patient Age"].to_numpy())
    assert (fields["age_group"] == "child").sum() == (raw["Patient Age"] < 18).sum()
    assert fields["label"].sum() == raw["Finding Labels"].str.split("|").map(lambda v: "Pneumonia" in v).sum()
    # PA means standing; AP alone says nothing about position, so it stays unknown
    assert set(fields.loc[fields["view"] == "AP", "position"]) == {"unknown"}
    assert fields["patient_key"].nunique() == raw["Patient ID"].nunique()


def test_chexpert_mapping_views_uncertain_labels_and_zero_ages():
    config = _load("chexpert")
    frame = read_table(XRV_DATA / "chexpert_train.csv.gz", config.metadata_mapping).iloc[:40000]
    fields = table_fields(frame, config, salt="t")
    lateral = frame["Frontal/Lateral"] == "Lateral"
    assert (fields.loc[lateral, "view"] == "LL").all()
    assert (fields.loc[~lateral, "view"] == frame.loc[~lateral, "AP/PA"]).all()
    uncertain = frame["Pneumonia"] == "-1.0"
    assert fields.loc[uncertain, "label"].isna().all() and fields.loc[~uncertain, "label"].notna().all()
    assert fields["label"].sum() == (frame["Pneumonia"] == "1.0").sum()
    assert fields.loc[frame["Age"] == "0", "age_years"].isna().all()  # torchxrayvision's order bug kept age 0
    patients = frame["Path"].str.extract(r"(patient\d+)")[0]
    assert fields["patient_key"].nunique() == patients.nunique()


def test_padchest_mapping_projection_position_and_age_from_birth_year():
    config = _load("padchest")
    frame = read_table(
        XRV_DATA / "PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv.gz", config.metadata_mapping
    ).iloc[:30000]
    fields = table_fields(frame, config, salt="t")
    horizontal = frame["Projection"] == "AP_horizontal"
    assert horizontal.sum() > 0 and (fields.loc[horizontal, "position"] == "supine").all()
    assert (fields.loc[horizontal, "view"] == "AP").all()
    assert (fields.loc[frame["Projection"] == "L", "view"] == "LL").all()
    expected_age = frame["StudyDate_DICOM"].str[:4].astype(float) - pd.to_numeric(frame["PatientBirth"], errors="coerce")
    assert np.allclose(fields["age_years"], expected_age, equal_nan=True)
    assert fields["label"].sum() == frame["Labels"].str.contains("'pneumonia'", regex=False).sum()
    assert set(fields["modality"]) <= {"CR", "DX"}


def test_rsna_mapping_labels_and_dicom_header_fields():
    config = _load("rsna_pneumonia")
    labels = read_table(XRV_DATA / "kaggle_stage_2_train_labels.csv.zip", config.metadata_mapping)
    index = index_metadata(labels, config.metadata_mapping)
    rows = {key: entries[0][1] for key, entries in index.rows.items()}
    duplicates = sum(len(entries) - 1 for entries in index.rows.values())  # rows beyond the first of their key
    raw = pd.read_csv(XRV_DATA / "kaggle_stage_2_train_labels.csv.zip")
    assert len(rows) == raw["patientId"].nunique() and duplicates == len(raw) - raw["patientId"].nunique()
    assert next(iter(rows)).endswith(".dcm")
    positives = sum(int(r["Target"]) for r in rows.values())
    assert positives == raw.groupby("patientId")["Target"].first().sum()
    # the other fields come from the DICOM headers (the headers CSV is those tags, one row per image)
    headers = pd.read_csv(XRV_DATA / "kaggle_stage_2_train_images_dicom_headers.csv.gz", dtype=str)
    harmoniser = Harmoniser(config, salt="t")
    derived = [harmoniser.fields(None, {"ViewPosition": v, "PatientAge": a, "PatientSex": s}, p, p)
               for v, a, s, p in headers[["ViewPosition", "PatientAge", "PatientSex", "PatientID"]].itertuples(index=False)]
    views = pd.Series([d["view"] for d in derived]).value_counts().to_dict()
    assert views == headers["ViewPosition"].value_counts().to_dict()
    ages = np.array([d["age_years"] for d in derived])
    raw_ages = headers["PatientAge"].astype(float).to_numpy()
    assert np.array_equal(np.isnan(ages), raw_ages > 120)  # RSNA has a few impossible ages (148, 150, 155)
    assert np.allclose(ages[~np.isnan(ages)], raw_ages[raw_ages <= 120])


COVID_CSV = """patientid,offset,sex,age,finding,RT_PCR_positive,survival,view,modality,date,location,folder,filename
2,0,M,65,Pneumonia/Viral/COVID-19,Y,,PA,X-ray,2020,"Wuhan Jinyintan Hospital, Wuhan, China",images,auntminnie-a-2020_01_28_23_51_6665_2020_01_28_Vietnam_coronavirus.jpeg
3,5,F,,Pneumonia/Viral/COVID-19,Y,Y,AP Supine,X-ray,2020,,images,covid-19-pneumonia-7-PA.jpg
4,,F,50+,Pneumonia/Bacterial/Streptococcus,,,AP semi erect,X-ray,,Italy,images,strep-1.png
4,,F,50+,Pneumonia/Bacterial/Streptococcus,,,Axial,CT,,Italy,images,strep-ct.png
5,,M,  42 ,No Finding,,,L,X-ray,,,images,normal-1.png
"""


def test_covid_chestxray_mapping_label_view_position_modality(tmp_path):
    config = _load("covid_chestxray")
    path = tmp_path / "metadata.csv"
    path.write_text(COVID_CSV, encoding="utf-8")
    fields = table_fields(read_table(path, config.metadata_mapping), config, salt="t")
    assert fields["label"].tolist() == [1, 1, 0, 0, 0]
    assert fields["view"].tolist() == ["PA", "AP", "AP", "unknown", "LL"]
    assert fields["position"].tolist() == ["erect", "supine", "unknown", "unknown", "unknown"]
    assert fields["modality"].tolist() == ["DX", "DX", "DX", "CT", "DX"]
    assert fields["site"].tolist()[1] == "covid_chestxray" and fields["site"].tolist()[2] == "Italy"
    assert fields["age_years"].tolist()[2] == 50 and "lower_bound" in fields["age_source"].tolist()[2]
    assert fields["age_years"].tolist()[4] == 42


def test_read_table_latin1_whitespace_and_case_tolerated(tmp_path):
    mapping = MetadataMapping(
        file_column="File", label_column="Finding", positive_values=["covid-19"], negative_values=["normal", ""],
        site_column="Hospital", age_column="Age", sex_column="Sex", view_columns=["View"],
    )
    text = "  file ;FINDING;  Hospital ;Age;Sex;view\n a.dcm ; COVID-19 ;Hôpital Nord; 050+ ; f ; pa \nb.dcm;Normal;Hôpital Nord;;M;AP\n"
    path = tmp_path / "meta.csv"
    path.write_bytes(text.encode("latin-1"))
    frame = read_table(path, mapping.model_copy(update={"separator": ";"}))
    config = IngestConfig(metadata_mapping=mapping.model_copy(update={"separator": ";"}), site_map={"hôpital nord": "nord"})
    fields = table_fields(frame, config, salt="t")
    assert fields["label"].tolist() == [1, 0]
    assert fields["site"].tolist() == ["nord", "nord"]
    assert fields["sex"].tolist() == ["F", "M"] and fields["view"].tolist() == ["PA", "AP"]
    assert fields["age_years"].tolist()[0] == 50 and np.isnan(fields["age_years"].tolist()[1])
    assert frame["File"].tolist() == ["a.dcm", "b.dcm"]


def test_read_table_missing_mapped_column_names_column_and_fix(tmp_path):
    path = tmp_path / "meta.csv"
    path.write_text("file,label\na.dcm,1\n")
    mapping = MetadataMapping(file_column="file", label_column="finding", positive_values=["1"])
    with pytest.raises(ConfigError, match="'finding'"):
        read_table(path, mapping)
