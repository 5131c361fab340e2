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
