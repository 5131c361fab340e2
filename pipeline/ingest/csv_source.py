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
        return image_base(posix.name)
    return str(posix)


@dataclass
class MetadataIndex:
    """Every row of a metadata CSV under its lookup key, with its CSV line (header = line 1, one line per row)."""

    rows: dict[str, list[tuple[int, dict[str, Any]]]] = field(default_factory=dict)
    n_rows: int = 0

    @property
    def duplicates(self) -> int:
        """Rows beyond the first of their key."""
        return sum(len(entries) - 1 for entries in self.rows.values())


def index_metadata(frame: pd.DataFrame, mapping: MetadataMapping) -> MetadataIndex:
    index = MetadataIndex(n_rows=len(frame))
    for line, record in enumerate(frame.to_dict("records"), start=2):
        key = row_key(str(record[mapping.file_column]), mapping.match, mapping.file_suffix)
        index.rows.setdefault(key, []).append((line, record))
    return index


def index_rows(frame: pd.DataFrame, mapping: MetadataMapping) -> tuple[dict[str, dict[str, str]], int]:
    """key -> first row (as a dict); the number of rows beyond the first of their key."""
    index = index_metadata(frame, mapping)
    return {key: entries[0][1] for key, entries in index.rows.items()}, index.duplicates


def label_parts(text: str | None, mapping: MetadataMapping) -> list[str]:
    """The upper-cased label values of one cell (split by ``label_separator``, stripped); [] when blank."""
    from pipeline.ingest.harmonise import clean

    text = clean(text)
    if text is None:
        return []
    parts = [text] if not mapping.label_separator else [
        clean(p.strip().strip(mapping.label_strip_chars)) for p in text.split(mapping.label_separator)
    ]
    return [p.upper() for p in parts if p is not None]


def label_values_present(frame: pd.DataFrame, mapping: MetadataMapping) -> set[str]:
    """The upper-cased label values (after splitting) of the mapping's label column; empty without one."""
    if not mapping.label_column or mapping.label_column not in frame.columns:
        return set()
    return {part for cell in frame[mapping.label_column].unique().tolist() for part in label_parts(cell, mapping)}


def check_label_values(tables: list[tuple[MetadataMapping, set[str], str]]) -> None:
    """Every configured positive/negative value occurs (case-insensitively) in the label column of at least one CSV
    read with it ((mapping, values present, where) per source; a normal-only collection beside a COVID one is fine),
    else ConfigError listing the values present. A blank negative value ('') is exempt."""
    from pipeline.ingest.harmonise import clean

    present = set().union(*(p for _, p, _ in tables))
    for mapping, _, where in tables:
        if not mapping.label_column:
            continue
        for key, values in (("positive_values", mapping.positive_values), ("negative_values", mapping.negative_values)):
            missing = [v for v in values or [] if clean(str(v)) is not None and str(v).strip().upper() not in present]
            if missing:
                raise ConfigError(
                    f"ingest: {key} {missing} of mapping {mapping.name!r} must occur in column "
                    f"{mapping.label_column!r} (compared case-insensitively), got values {sorted(present)[:30]} "
                    f"({where}). Fix the spelling or remove the value."
                )


def image_key(relative: str, match: str) -> str:
    return row_key(relative, match)
