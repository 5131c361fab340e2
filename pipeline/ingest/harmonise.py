"""Raw metadata values (DICOM tags or CSV cells) -> canonical manifest fields, each with where it came from.

Every function takes the raw value(s) plus the origin (``"dicom:ViewPosition"``, ``"csv:View Position"``) and
returns ``(value, source)``. Unknown stays unknown: nothing is guessed that the data does not say.
Cleaning order matters and is tested: strip -> collapse whitespace -> upper-case -> missing markers -> map.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from pipeline.ingest.config import MetadataMapping, PositionRule
from pipeline.names import norm_key

MISSING_MARKERS = frozenset({"", "NAN", "NONE", "NULL", "N/A", "NA", "?", "-", "UNKNOWN", "NOT AVAILABLE"})
_AGE_RE = re.compile(r"^(\d+(?:[.,]\d+)?)\s*([YMWD]|YEARS?|MONTHS?|WEEKS?|DAYS?)?\s*(\+)?$")
_AGE_UNIT_YEARS = {"Y": 1.0, "M": 1 / 12, "W": 7 / 365.25, "D": 1 / 365.25}
MAX_AGE_YEARS = 120.0


def clean(value: object) -> str | None:
    """A raw cell as stripped, single-spaced text, or None when missing (NaN, '', 'None', 'n/a', ...)."""
    if value is None:
        return None
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    text = " ".join(str(value).split())
    return None if text.upper() in MISSING_MARKERS else text


def parse_age(raw: object, origin: str) -> tuple[float, str]:
    """'045Y' -> 45, '006M' -> 0.5, '50+' -> 50 (a lower bound, said in the source), '45.0' -> 45; else NaN."""
    text = clean(raw)
    if text is None:
        return math.nan, f"{origin}:missing"
    match = _AGE_RE.match(text.upper())
    if match is None:
        return math.nan, f"{origin}:unparseable"
    number = float(match.group(1).replace(",", "."))
    unit = (match.group(2) or "Y")[0]
    years = number * _AGE_UNIT_YEARS[unit]
    if not 0 <= years <= MAX_AGE_YEARS:
        return math.nan, f"{origin}:out_of_range"
    note = ":lower_bound" if match.group(3) else ""
    return years, f"{origin}{note}"


def age_from_birth_year(birth: object, date: object, origin: str) -> tuple[float, str]:
    """Age in whole years from a birth year and a study date (YYYYMMDD, YYYY-MM-DD or a year)."""
    birth_text, date_text = clean(birth), clean(date)
    if birth_text is None or date_text is None:
        return math.nan, f"{origin}:missing"
    try:
        birth_year = float(birth_text)
        study_year = float(re.sub(r"\D", "", date_text)[:4])
    except ValueError:
        return math.nan, f"{origin}:unparseable"
    years = study_year - birth_year
    if not 0 <= years <= MAX_AGE_YEARS:
        return math.nan, f"{origin}:out_of_range"
    return years, f"{origin}:study_year_minus_birth_year"


def age_group(years: float, child_max_years: float) -> str:
    if years is None or math.isnan(years):
        return "unknown"
    return "child" if years < child_max_years else "adult"


def map_value(raw: object, table: dict[str, str], origin: str) -> tuple[str, str]:
    """Look a cleaned, upper-cased value up in ``table`` (keys compared upper-cased); 'unknown' when absent."""
    text = clean(raw)
    if text is None:
        return "unknown", f"{origin}:missing"
    upper = {norm_key(k): v for k, v in table.items()}  # case, whitespace and Unicode form ignored
    key = norm_key(text)
    if key in upper:
        return upper[key], origin
    return "unknown", f"{origin}:unmapped"


def map_position(
    texts: Sequence[tuple[object, str]], rules: Sequence[PositionRule], view: str, pa_is_erect: bool
) -> tuple[str, str]:
    """Position from keywords in free-text fields (rules in order, fields in order), else PA -> erect."""
    cleaned = [(clean(raw), origin) for raw, origin in texts]
    for rule in rules:
        pattern = re.compile(r"(?<![A-Z])" + re.escape(rule.pattern.upper()) + r"(?![A-Z])")
        for text, origin in cleaned:
            if text is not None and pattern.search(text.upper()):
                return rule.position, f"{origin}~{rule.pattern}"
    if pa_is_erect and view == "PA":
        return "erect", "view:PA_is_erect"
    return "unknown", "no_keyword"


def map_site(raw: object, site_map: dict[str, str], origin: str) -> tuple[str | None, str]:
    """Raw site -> short name via ``site_map`` (case-insensitive); an unmapped name is kept as it is."""
    text = clean(raw)
    if text is None:
        return None, f"{origin}:missing"
    keys = {norm_key(k): v for k, v in site_map.items()}  # case, whitespace and Unicode form ignored
    if norm_key(text) in keys:
        return keys[norm_key(text)], f"{origin}:site_map"
    return text, origin


def label_parts(text: object, mapping: MetadataMapping) -> list[str]:
    """The label values of one cell as spelled (split by ``label_separator``, stripped, whitespace collapsed); []
    when blank."""
    text = clean(text)
    if text is None:
        return []
    parts = [text] if not mapping.label_separator else [
        clean(p.strip().strip(mapping.label_strip_chars)) for p in text.split(mapping.label_separator)
    ]
    return [p for p in parts if p is not None]


def map_label(raw: object, mapping: MetadataMapping, origin: str) -> tuple[int | None, str]:
    """1 when any (separated) value is positive; 0 when every value is negative (with ``negative_values`` null: when
    a value is present and not positive). A blank cell is unknown (None, ``:missing``) unless a missing marker such
    as '' is listed in ``negative_values``; a present value that maps to neither is None with ``:unmapped``."""
    text = clean(raw)
    negatives = None if mapping.negative_values is None else {norm_key(v) for v in mapping.negative_values}
    if text is None:
        if negatives is not None and {v.upper() for v in negatives} & MISSING_MARKERS:
            return 0, origin
        return None, f"{origin}:missing"
    positives = {norm_key(v) for v in mapping.positive_values}
    upper_parts = {norm_key(p) for p in label_parts(text, mapping)}
    if upper_parts & positives:
        return 1, origin
    if negatives is None:
        return 0, f"{origin}:not_positive"
    if upper_parts and upper_parts <= negatives:
        return 0, origin
    return None, f"{origin}:unmapped"
