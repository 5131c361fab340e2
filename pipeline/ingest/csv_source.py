"""Metadata CSVs as hospitals and public data sets ship them: odd encodings, stray whitespace, mixed case.

Every cell is read as text (so '1.0' stays '1.0' and '050+' stays '050+'); the harmonisers decide what it means.
Rows are indexed by the key the mapping's ``match`` names (relative path, basename or stem of the image file).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from pipeline.errors import ConfigError, DataError
from pipeline.ingest.config import MetadataMapping

if TYPE_CHECKING:
    import pandas as pd


def read_table(path: str | Path, mapping: MetadataMapping) -> pd.DataFrame:
    """All columns as stripped text; utf-8 (with or without BOM), falling back to latin-1; gz/zip handled."""
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
    frame.columns = [" ".join(str(c).split()) for c in frame.columns]
    for column in frame.columns:
        frame[column] = frame[column].str.strip()
    return check_columns(frame, mapping, str(path))


def mapped_columns(mapping: MetadataMapping) -> list[str]:
    columns = [mapping.file_column, mapping.label_column, mapping.site_column, mapping.age_column,
               mapping.sex_column, mapping.patient_column, mapping.modality_column, *mapping.view_columns,
               *mapping.position_columns]
    if mapping.age_from_birth is not None:
        columns += [mapping.age_from_birth.birth_column, mapping.age_from_birth.date_column]
    return [c for c in columns if c]


def check_columns(frame: pd.DataFrame, mapping: MetadataMapping, where: str) -> pd.DataFrame:
    """Column names are matched case-insensitively; the frame's columns are renamed to the mapping's spelling."""
    by_upper = {c.upper(): c for c in frame.columns}
    renames = {}
    for column in mapped_columns(mapping):
        actual = by_upper.get(" ".join(column.split()).upper())
        if actual is None:
            raise ConfigError(
                f"ingest: column {column!r} of mapping {mapping.name!r} must exist in the metadata, got columns "
                f"{list(frame.columns)[:30]} ({where}). Fix the mapping's column names."
            )
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
        return posix.name.split(".")[0] if "." in posix.name else posix.name
    return str(posix)


def index_rows(frame: pd.DataFrame, mapping: MetadataMapping) -> tuple[dict[str, dict[str, str]], int]:
    """key -> row (as a dict); the number of duplicate keys (the first row of each wins)."""
    rows: dict[str, dict[str, str]] = {}
    duplicates = 0
    for record in frame.to_dict("records"):
        key = row_key(str(record[mapping.file_column]), mapping.match, mapping.file_suffix)
        if key in rows:
            duplicates += 1
            continue
        rows[key] = record
    return rows, duplicates


def image_key(relative: str, match: str) -> str:
    return row_key(relative, match)
