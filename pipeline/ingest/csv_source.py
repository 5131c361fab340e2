"""Metadata CSVs as hospitals and public data sets ship them: odd encodings, stray whitespace, mixed case.

Every cell is read as text (so '1.0' stays '1.0' and '050+' stays '050+'); the harmonisers decide what it means.
Rows are indexed by the key the mapping's ``match`` names (relative path, basename or stem of the image file).
A stem drops only a final image/DICOM extension (``CR.1.2.840.1.png`` -> ``CR.1.2.840.1``; ``1.2.840.10008.5``
stays whole): DICOM UIDs are full of dots. Every row is kept with its CSV line, so duplicates can be compared.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError, DataError
from pipeline.ingest.config import MetadataMapping
from pipeline.ingest.discover import image_base
from pipeline.ingest.harmonise import clean, label_parts
from pipeline.ingest.names import NameLog
from pipeline.names import norm_key

if TYPE_CHECKING:
    import pandas as pd


def read_table(path: str | Path, mapping: MetadataMapping, *, log: NameLog | None = None,
               key: str = "metadata_mapping") -> pd.DataFrame:
    """All columns as stripped text; utf-8 (with or without BOM), falling back to latin-1; gz/zip handled. Mapped
    column names found only by ignoring case/whitespace are logged in ``log`` under ``<key>.<field>``."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"ingest: --metadata must be a CSV file, got {str(path)!r} (not found).")
    encodings = [mapping.encoding] if mapping.encoding else ["utf-8-sig", "latin-1"]
    last_error: Exception | None = None
    for encoding in encodings:
        try:
            frame = pd.read_csv(
                path, dtype=str, keep_default_na=False, sep=mapping.separator, encoding=encoding,
                skipinitialspace=True, engine="c",
            )
            break
        except UnicodeDecodeError as exc:
            last_error = exc
    else:
        raise DataError(f"ingest: metadata {path} must be text in {encodings}, got undecodable bytes ({last_error}).")
    raw_columns = [str(c) for c in frame.columns]
    frame.columns = [" ".join(str(c).split()) for c in frame.columns]
    for column in frame.columns:
        frame[column] = frame[column].str.strip()
    return check_columns(frame, mapping, str(path), raw_columns=raw_columns, log=log, key=key)


def mapped_fields(mapping: MetadataMapping) -> list[tuple[str, str]]:
    """(mapping key, column name) of every column the mapping reads."""
    fields = [("file_column", mapping.file_column), ("label_column", mapping.label_column),
              ("site_column", mapping.site_column), ("age_column", mapping.age_column),
              ("sex_column", mapping.sex_column), ("patient_column", mapping.patient_column),
              ("modality_column", mapping.modality_column),
              *(("view_columns", c) for c in mapping.view_columns),
              *(("position_columns", c) for c in mapping.position_columns)]
    if mapping.age_from_birth is not None:
        fields += [("age_from_birth.birth_column", mapping.age_from_birth.birth_column),
                   ("age_from_birth.date_column", mapping.age_from_birth.date_column)]
    return [(k, c) for k, c in fields if c]


_OTHER_SEPARATORS = (";", "\t", "|")


def _separator_hint(columns: list[str], mapping: MetadataMapping) -> str:
    """' The header looks ';'-separated: ...' when one column name holds another common separator, else ''."""
    for sep in _OTHER_SEPARATORS:
        if sep != mapping.separator and any(sep in c for c in columns):
            shown = "\\t" if sep == "\t" else sep
            return (f" The header looks '{shown}'-separated, not {mapping.separator!r}-separated: set "
                    f"`separator: \"{shown}\"` in the metadata mapping.")
    return ""


def check_columns(
    frame: pd.DataFrame, mapping: MetadataMapping, where: str, *, raw_columns: list[str] | None = None,
    log: NameLog | None = None, key: str = "metadata_mapping",
) -> pd.DataFrame:
    """Column names are matched ignoring case and whitespace; the frame's columns are renamed to the mapping's
    spelling. ``raw_columns``: the header as the file spells it (to log names that needed the tolerance)."""
    raw_by_column = dict(zip(frame.columns, raw_columns or list(frame.columns), strict=True))
    by_norm = {norm_key(c): c for c in frame.columns}
    renames = {}
    for field_name, column in mapped_fields(mapping):
        actual = by_norm.get(norm_key(column))
        if actual is None:
            shown = [raw_by_column[c] for c in frame.columns][:30]
            raise ConfigError(
                f"ingest: column {column!r} ({field_name}) of mapping {mapping.name!r} must exist in the metadata "
                f"(compared ignoring case and whitespace), got columns {shown} ({where}). Fix the mapping's column "
                f"names.{_separator_hint(shown, mapping)}"
            )
        if log is not None and column != raw_by_column[actual]:
            log.add(f"{key}.{field_name}", column, raw_by_column[actual])
        renames[actual] = column
    return frame.rename(columns=renames)


def row_key(value: str, match: str, suffix: str = "") -> str:
    """Normalised lookup key of a file reference: forward slashes, no leading './', case kept."""
    text = (value.strip() + suffix).replace("\\", "/")
    while text.startswith("./"):
        text = text[2:]
    posix = PurePosixPath(text)
    if match == "basename":
        return posix.name
    if match == "stem":
        return image_base(posix.name)
    return str(posix)


@dataclass
class MetadataIndex:
    """Every row of a metadata CSV under its lookup key, with its CSV line (header = line 1, one line per row)."""

    rows: dict[str, list[tuple[int, dict[str, Any]]]] = field(default_factory=dict)
    n_rows: int = 0


def index_metadata(frame: pd.DataFrame, mapping: MetadataMapping) -> MetadataIndex:
    index = MetadataIndex(n_rows=len(frame))
    for line, record in enumerate(frame.to_dict("records"), start=2):
        key = row_key(str(record[mapping.file_column]), mapping.match, mapping.file_suffix)
        index.rows.setdefault(key, []).append((line, record))
    return index


def label_values_present(frame: pd.DataFrame, mapping: MetadataMapping) -> set[str]:
    """The label values (after splitting, as spelled) of the mapping's label column; empty without one."""
    if not mapping.label_column or mapping.label_column not in frame.columns:
        return set()
    return {part for cell in frame[mapping.label_column].unique().tolist() for part in label_parts(cell, mapping)}


def check_label_values(tables: list[tuple[MetadataMapping, set[str], str]], *, log: NameLog | None = None) -> None:
    """Every configured positive/negative value occurs (ignoring case/whitespace) in the label column of at least one
    CSV ((mapping, values present as spelled, where) per source; a normal-only collection beside a COVID one is fine),
    else ConfigError listing, per source, the values present as the data spells them. A blank negative value ('') is
    exempt. A value found only by ignoring case is logged (key 'metadata_mapping.positive_values'/...)."""
    spellings: dict[str, set[str]] = {}
    for _, present, _ in tables:
        for value in present:
            spellings.setdefault(norm_key(value), set()).add(value)
    for mapping, _, where in tables:
        if not mapping.label_column:
            continue
        for key, values in (("positive_values", mapping.positive_values), ("negative_values", mapping.negative_values)):
            given = [str(v) for v in values or [] if clean(str(v)) is not None]
            missing = [v for v in given if norm_key(v) not in spellings]
            if missing:
                per_source = "; ".join(f"{w}: {sorted(p)[:30]}" for m, p, w in tables if m.label_column)
                raise ConfigError(
                    f"ingest: {key} {missing} of mapping {mapping.name!r} must occur in column "
                    f"{mapping.label_column!r} (compared ignoring case and whitespace; {where}), got label values "
                    f"(as in the data, whitespace collapsed) {per_source}. Fix the spelling or remove the value."
                )
            for value in given:
                if log is not None and value not in spellings[norm_key(value)]:
                    log.add(f"metadata_mapping.{key}", value, " | ".join(sorted(spellings[norm_key(value)])))


def image_key(relative: str, match: str) -> str:
    return row_key(relative, match)
