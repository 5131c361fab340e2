"""Harmonisers: raw values -> canonical fields, unknown kept honest, cleaning order tested."""

import math

import pytest

from pipeline.ingest import harmonise as h
from pipeline.ingest.config import DEFAULT_VIEW_MAP, IngestConfig, MetadataMapping


@pytest.mark.parametrize(
    "raw, years, note",
    [("045Y", 45.0, ""), ("006M", 0.5, ""), ("050+", 50.0, "lower_bound"), (" 45 ", 45.0, ""), ("45.0", 45.0, ""),
     ("014D", 14 / 365.25, ""), ("003W", 21 / 365.25, ""), ("62 years", 62.0, "")],
)
def test_parse_age_dicom_and_csv_formats_return_years(raw, years, note):
    value, source = h.parse_age(raw, "csv:Age")
    assert value == pytest.approx(years) and note in source


@pytest.mark.parametrize("raw, why", [("", "missing"), (None, "missing"), ("nan", "missing"), ("abc", "unparseable"),
                                      ("200Y", "out_of_range"), ("-5", "unparseable")])
def test_parse_age_bad_values_return_nan_with_reason(raw, why):
    value, source = h.parse_age(raw, "dicom:PatientAge")
    assert math.isnan(value) and source.endswith(why)


def test_age_group_threshold_and_unknown():
    assert h.age_group(7.0, 18) == "child" and h.age_group(18.0, 18) == "adult" and h.age_group(math.nan, 18) == "unknown"


def test_map_value_cleans_whitespace_and_case_before_lookup():
    assert h.map_value("  ap   supine ", DEFAULT_VIEW_MAP, "dicom:ViewPosition") == ("AP", "dicom:ViewPosition")
    assert h.map_value("oblique", DEFAULT_VIEW_MAP, "x")[0] == "unknown"
    assert h.map_value(" N/A ", DEFAULT_VIEW_MAP, "x") == ("unknown", "x:missing")


def test_map_position_semi_erect_checked_before_erect_and_keyword_before_view():
    rules = IngestConfig().position_rules
    assert h.map_position([("AP SEMI-ERECT", "csv:view")], rules, "AP", True)[0] == "unknown"
    assert h.map_position([("CHEST AP PORTABLE SUPINE", "dicom:SeriesDescription")], rules, "AP", True) == (
        "supine", "dicom:SeriesDescription~SUPINE")
    assert h.map_position([("CHEST PA ERECT", "dicom:SeriesDescription")], rules, "PA", True)[0] == "erect"
    assert h.map_position([("XR CHEST", "dicom:StudyDescription")], rules, "PA", True) == ("erect", "view:PA_is_erect")
    assert h.map_position([("XR CHEST", "dicom:StudyDescription")], rules, "AP", True) == ("unknown", "no_keyword")
    # a keyword inside another word does not count ('ERECTION' is not ERECT)
    assert h.map_position([("ERECTION", "x")], rules, "AP", True)[0] == "unknown"


def test_map_label_multilabel_negatives_and_unmapped():
    mapping = MetadataMapping(file_column="f", label_column="l", label_separator="|", positive_values=["Pneumonia"],
                              negative_values=["No Finding", "Effusion"])
    assert h.map_label("Effusion|Pneumonia", mapping, "csv:l")[0] == 1
    assert h.map_label("No Finding", mapping, "csv:l")[0] == 0
    assert h.map_label("Mass", mapping, "csv:l") == (None, "csv:l:unmapped")
    open_mapping = mapping.model_copy(update={"negative_values": None})
    assert h.map_label("Mass", open_mapping, "csv:l")[0] == 0
    # a blank cell is unknown, never an invented negative, unless '' is an explicit negative value
    assert h.map_label(None, open_mapping, "csv:l") == (None, "csv:l:missing")
    assert h.map_label(" ", mapping, "csv:l") == (None, "csv:l:missing")
    blank_negative = mapping.model_copy(update={"negative_values": ["No Finding", ""]})
    assert h.map_label("", blank_negative, "csv:l") == (0, "csv:l")


def test_map_site_uses_site_map_case_insensitively_and_keeps_unmapped_names():
    assert h.map_site("  HARBOUR city hospital", {"Harbour City Hospital": "harbour"}, "dicom:InstitutionName") == (
        "harbour", "dicom:InstitutionName:site_map")
    assert h.map_site("Elsewhere", {}, "o") == ("Elsewhere", "o")
    assert h.map_site("", {}, "o") == (None, "o:missing")


def test_every_precedence_source_has_a_reader():
    from pipeline.ingest.fields import PRECEDENCE, READERS

    assert set(READERS) == {(name, source) for name, sources in PRECEDENCE.items() for source in sources}


def test_site_precedence_csv_then_path_then_mapping_constant_then_dicom_then_config_constant():
    from pipeline.ingest.fields import Harmoniser

    mapping = MetadataMapping(file_column="file", site_column="hospital", site_constant="from_mapping")
    tags = {"InstitutionName": "From Tag"}

    def site(config: IngestConfig, row: dict | None, relative: str = "x.dcm") -> tuple[str, str]:
        fields = Harmoniser(config, "salt").fields(row, tags, None, relative, relative=relative)
        return fields["site"], fields["site_source"]

    with_csv = IngestConfig(metadata_mapping=mapping, site_constant="from_config")
    assert site(with_csv, {"file": "x.dcm", "hospital": "North"}) == ("North", "csv:hospital")
    assert site(with_csv, {"file": "x.dcm", "hospital": ""}) == ("from_mapping", "mapping:site_constant")
    assert site(IngestConfig(site_constant="from_config"), None) == ("From Tag", "dicom:InstitutionName")
    path = IngestConfig(metadata_mapping=mapping, path_fields={"site": r"^(?P<site>CR)_"}, site_constant="c")
    assert site(path, {"file": "CR_1.dcm", "hospital": None}, "CR_1.dcm") == ("CR", "path:site")
    # a configured path field decides: unmatched, the site is unknown, not the mapping constant nor the tag
    assert site(path, {"file": "DX_1.dcm", "hospital": None}, "DX_1.dcm") == ("unknown", "path:site:unmatched")
    assert site(path, {"file": "DX_1.dcm", "hospital": "South"}, "DX_1.dcm") == ("South", "csv:hospital")
    no_tag = Harmoniser(IngestConfig(site_constant="from_config"), "salt").fields(None, {}, None, "x.dcm")
    assert (no_tag["site"], no_tag["site_source"]) == ("from_config", "config:site_constant")


def test_patient_key_falls_back_to_one_patient_per_image_even_when_a_path_field_decided():
    from pipeline.ingest.fields import Harmoniser, patient_key

    config = IngestConfig(path_fields={"patient": r"patient(?P<patient>\d+)"})
    harmoniser = Harmoniser(config, "salt")
    matched = harmoniser.fields(None, {}, "DICOM-ID", "patient7/a.dcm", relative="patient7/a.dcm")
    assert (matched["patient_key"], matched["patient_key_source"]) == (patient_key("salt", "7"), "path:patient")
    unmatched = harmoniser.fields(None, {}, "DICOM-ID", "b.dcm", relative="b.dcm")
    assert unmatched["patient_key"] == patient_key("salt", "file:b.dcm")  # the DICOM ID is not read
    assert unmatched["patient_key_source"] == "none:one_patient_per_image"
