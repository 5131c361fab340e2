"""Pair image files with their metadata CSV rows, and account for every row and file on the way.

Nothing is dropped silently: a CSV row whose image is missing is counted (``metadata_rows_without_image``), one CSV
key naming several files is an error naming them, rows of one file that disagree on a mapped field (after
harmonisation) reject that file as ``conflicting_metadata_rows`` with both CSV lines and the differing values, and
rows that agree are counted as duplicates only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import DataError
from pipeline.ingest.config import MetadataMapping
from pipeline.ingest.csv_source import MetadataIndex, image_key
from pipeline.ingest.dicom import scrub_values
from pipeline.ingest.discover import Candidate
from pipeline.ingest.fields import Harmoniser
from pipeline.ingest.harmonise import clean
from pipeline.names import norm_key

# harmonised fields two rows of the same file must agree on (provenance columns and label_name are not data)
COMPARED_FIELDS = ("label", "site", "view", "position", "age_years", "sex", "patient_key", "modality")
N_EXAMPLES = 5
Reject = tuple[str, str, str]


@dataclass
class MatchReport:
    """How the rows of one metadata CSV met the files (summary.json and the console print these)."""

    n_rows: int = 0
    n_rows_matched: int = 0
    without_image: list[str] = field(default_factory=list)  # file column values (CSV order) of unmatched rows
    n_without_image: int = 0
    duplicate_rows: int = 0  # rows repeating an earlier row of a matched file with the same mapped fields
    conflicting_files: int = 0  # files rejected because their rows disagree

    def merge(self, other: MatchReport) -> None:
        self.n_rows += other.n_rows
        self.n_rows_matched += other.n_rows_matched
        self.n_without_image += other.n_without_image
        self.without_image += other.without_image
        self.duplicate_rows += other.duplicate_rows
        self.conflicting_files += other.conflicting_files


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    if isinstance(a, str) and isinstance(b, str):
        return norm_key(a) == norm_key(b)  # case / whitespace / Unicode form are one spelling (spellings.py merges them)
    return a == b


def _conflict(entries: list[tuple[int, dict]], harmoniser: Harmoniser, relative: str) -> str | None:
    """None when every row maps to the same fields, else 'CSV lines 2 and 7 disagree: label 0 vs 1; ...'."""
    first_line, first_row = entries[0]
    first = harmoniser.fields(first_row, None, None, relative, relative=relative)
    for line, row in entries[1:]:
        other = harmoniser.fields(row, None, None, relative, relative=relative)
        diffs = [f"{k} {_shown(first[k])} vs {_shown(other[k])}" for k in COMPARED_FIELDS if not _same(first[k], other[k])]
        if diffs:
            lines = ", ".join(str(n) for n, _ in entries)
            text = f"CSV lines {first_line} and {line} (of lines {lines}) disagree: {'; '.join(diffs)}"
            return scrub_values(text, [*row_patient(first_row, harmoniser), *row_patient(row, harmoniser)])
    return None


def row_patient(row: dict | None, harmoniser: Harmoniser) -> tuple[str, ...]:
    """The CSV patient column's value of ``row``, cleaned as the harmoniser reads it (to scrub from file names and
    messages: :func:`pipeline.ingest.dicom.scrub_values`), () without one."""
    mapping = harmoniser.mapping
    if row is None or mapping is None or not mapping.patient_column:
        return ()
    value = clean(row.get(mapping.patient_column))
    return (value,) if value else ()


def _shown(value: Any) -> str:
    if value is None:
        return "unknown"
    if isinstance(value, float) and math.isnan(value):
        return "unknown"
    return repr(value) if isinstance(value, str) else str(value)


def _check_keys_unique(candidates: list[Candidate], index: MetadataIndex, mapping: MetadataMapping, where: str) -> None:
    """One CSV key must name one file: under match basename/stem two files can share it (a/x.png, b/x.png)."""
    seen: dict[str, str] = {}
    for candidate in candidates:
        key = image_key(candidate.local, mapping.match)
        if key in seen and key in index.rows:
            raise DataError(
                f"ingest: each row of {where} must name one file (match: {mapping.match}), got key {key!r} (CSV line "
                f"{index.rows[key][0][0]}) matching both {seen[key]!r} and {candidate.relative!r}. Use match: path "
                "with paths relative to SOURCE, or remove one of the files."
            )
        seen[key] = candidate.relative


def match_metadata(
    candidates: list[Candidate], index: MetadataIndex | None, mapping: MetadataMapping | None,
    harmoniser: Harmoniser, metadata: Path | None, rejects: list[Reject],
) -> tuple[list[tuple[Candidate, dict | None]], MatchReport]:
    """Each kept candidate with its CSV row (None without one). Rejected before decoding: files without a row when
    the mapping reads labels (``no_metadata_row``), a label value that maps to neither class (``label_unmapped``),
    rows that disagree (``conflicting_metadata_rows``). A blank label keeps the file, label unknown."""
    report = MatchReport()
    if mapping is None or index is None:
        return [(c, None) for c in candidates], report
    where = metadata.name if metadata is not None else "the metadata"
    _check_keys_unique(candidates, index, mapping, where)
    report.n_rows = index.n_rows
    matched_keys: set[str] = set()
    kept: list[tuple[Candidate, dict | None]] = []
    for candidate in candidates:
        key = image_key(candidate.local, mapping.match)
        entries = index.rows.get(key)
        if entries is None:
            if mapping.label_column:
                rejects.append(_unmatched_reject(candidate, harmoniser, f"no row of {where} names this file ({key!r})"))
            else:
                kept.append((candidate, None))
            continue
        matched_keys.add(key)
        conflict = _conflict(entries, harmoniser, candidate.local) if len(entries) > 1 else None
        if conflict is not None:
            report.conflicting_files += 1
            rejects.append((candidate.relative, "conflicting_metadata_rows", f"{where}: {conflict}"))
            continue
        report.duplicate_rows += len(entries) - 1
        row = entries[0][1]
        label, source = harmoniser.label_of(row)
        if label is None and source.endswith(":unmapped"):
            detail = f"{mapping.label_column}={row.get(mapping.label_column)!r}"
            rejects.append((candidate.relative, "label_unmapped", scrub_values(detail, row_patient(row, harmoniser))))
            continue
        kept.append((candidate, row))
    _count_unmatched(index, matched_keys, mapping, report)
    if index.rows and candidates and not matched_keys:
        example_row, example_file = next(iter(index.rows)), image_key(candidates[0].local, mapping.match)
        raise DataError(
            f"ingest: {mapping.file_column!r} of {where} must name files under SOURCE (match: "
            f"{mapping.match}), got no match for any of {len(candidates)} files (e.g. CSV {example_row!r} vs file "
            f"{example_file!r}). Point SOURCE at the folder the paths are relative to, or use match: basename."
        )
    return kept, report


def _unmatched_reject(candidate: Candidate, harmoniser: Harmoniser, detail: str) -> Reject:
    """A file without a CSV row: the more basic reason first when its header already shows it is not a usable image
    (not DICOM, cut, no pixel data, wrong modality), the missing row said too; else ``no_metadata_row``."""
    from pipeline.ingest.dicom import header_reason

    modalities = harmoniser.config.modalities
    basic = header_reason(candidate.path, tuple(m.upper() for m in modalities) if modalities is not None else None)
    if basic is None:
        return candidate.relative, "no_metadata_row", detail
    return candidate.relative, basic[0], f"{basic[1]} (also: {detail})"


def _scrubbed_cell(row: dict, mapping: MetadataMapping) -> str:
    """A row's file column for summary.json, with its own patient column value (>= 3 characters) as [patient]."""
    from pipeline.ingest.privacy import PathScrubber

    patient = str(row.get(mapping.patient_column) or "") if mapping.patient_column else ""
    return PathScrubber("").beside(str(row.get(mapping.file_column)), (patient,))


def _count_unmatched(index: MetadataIndex, matched: set[str], mapping: MetadataMapping, report: MatchReport) -> None:
    for key, entries in index.rows.items():
        if key in matched:
            report.n_rows_matched += len(entries)
            continue
        report.n_without_image += len(entries)
        for _, row in entries:
            if len(report.without_image) < N_EXAMPLES:
                report.without_image.append(_scrubbed_cell(row, mapping))
