"""Fields given by two sources that disagree: a CSV column (or a ``path_fields`` pattern) and the DICOM tag.

The documented precedence stays (the CSV's or path's value wins, docs/ingest.md#fields-and-where-they-come-from),
but each disagreement after harmonisation is counted per field with examples for summary.json and the console, and
a site disagreement that moves an image between a held-out site (test / ood_val) and a training site is a warning
naming it: otherwise a CSV typo silently moves a test-hospital image into training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pipeline.names import norm_key

if TYPE_CHECKING:
    from pipeline.artefacts.ingest_summary import FieldDisagreements

N_EXAMPLES = 5
# fields the DICOM header can also give (pipeline.ingest.fields.Harmoniser.tag_values)
SOURCE_COLUMN = {"site": "site_source", "view": "view_source", "position": "position_source",
                 "age_years": "age_source", "sex": "sex_source", "modality": "modality_source",
                 "patient_key": "patient_key_source"}
COMPARED = tuple(SOURCE_COLUMN)


@dataclass(frozen=True)
class Disagreement:
    """One image's field where the kept value (CSV/path) and the DICOM tag's value differ after harmonisation."""

    field: str
    file: str  # the manifest path (already scrubbed of patient identifiers)
    kept: Any
    kept_source: str
    other: Any
    other_source: str

    def scrubbed(self, patient: tuple[str, ...] | list[str]) -> Disagreement:
        """This disagreement with the file's patient values hidden in its quoted values (they become examples)."""
        from dataclasses import replace

        from pipeline.ingest.dicom import scrub_values

        hide = {k: scrub_values(v, patient) for k, v in (("kept", self.kept), ("other", self.other))
                if isinstance(v, str)}
        return replace(self, **hide) if patient else self

    def as_json(self) -> dict[str, Any]:
        hidden = self.field == "patient_key"  # salted keys say nothing to a reader: never the IDs themselves
        return {"file": self.file, "kept": "(salted key)" if hidden else _plain(self.kept),
                "kept_source": self.kept_source, "other": "(another salted key)" if hidden else _plain(self.other),
                "other_source": self.other_source}


def _plain(value: Any) -> Any:
    return round(float(value), 2) if isinstance(value, float) else value


def _differ(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        # ages: '45' in a CSV and '045Y' in the tag agree; a birthday between two records moves one year only
        return not (math.isnan(float(a)) or math.isnan(float(b))) and abs(float(a) - float(b)) >= 1.0
    return norm_key(str(a)) != norm_key(str(b))  # case / whitespace / Unicode form are one spelling (spellings.py)


def find(file: str, fields: dict[str, Any], tag_values: dict[str, tuple[Any, str]]) -> list[Disagreement]:
    """The disagreements of one image: ``fields`` as the harmoniser kept them (with ``*_source``), ``tag_values``
    what the DICOM header alone gives. A kept value from the header itself, or unknown, is not compared."""
    out = []
    for name in COMPARED:
        if name not in tag_values:
            continue
        source, kept = str(fields.get(SOURCE_COLUMN[name], "")), fields.get(name)
        # a config constant is not a second observation of the image, and a header value is the tag itself
        if not source.startswith(("csv:", "path:")) or kept in (None, "unknown"):
            continue
        if isinstance(kept, float) and math.isnan(kept):
            continue
        other, other_source = tag_values[name]
        if _differ(kept, other):
            out.append(Disagreement(name, file, kept, source, other, other_source))
    return out


def summarise(found: list[Disagreement], *, kept_paths: set[str], heldout: dict[str, str]) -> dict[str, Any]:
    """summary.json's ``field_disagreements``: field -> {n, examples}; the site entry also has ``heldout_moves``
    ({n, examples}, each with ``kept_split`` / ``tag_split``) for images whose kept site and tag site fall on
    different sides of the held-out line. ``heldout``: normalised held-out site name -> 'test' | 'ood_val'."""
    out: dict[str, Any] = {}
    for item in (d for d in found if d.file in kept_paths):
        entry = out.setdefault(item.field, {"n": 0, "examples": []})
        entry["n"] += 1
        if len(entry["examples"]) < N_EXAMPLES:
            entry["examples"].append(item.as_json())
        if item.field == "site":
            kept_side = heldout.get(norm_key(str(item.kept)), "training")
            tag_side = heldout.get(norm_key(str(item.other)), "training")
            if kept_side != tag_side:
                moves = entry.setdefault("heldout_moves", {"n": 0, "examples": []})
                moves["n"] += 1
                if len(moves["examples"]) < N_EXAMPLES:
                    moves["examples"].append({**item.as_json(), "kept_split": kept_side, "tag_split": tag_side})
    return out


def console_lines(disagreements: dict[str, FieldDisagreements]) -> list[str]:
    """One line per field (count, two examples), and a WARNING per field with held-out moves."""
    lines = []
    for name, entry in disagreements.items():
        shown = "; ".join(f"{e.file}: {e.kept!r} ({e.kept_source}) vs {e.other!r} ({e.other_source})"
                          for e in entry.examples[:2])
        lines.append(f"ingest: {name}: {entry.n} image{'' if entry.n == 1 else 's'} where the CSV/path value and "
                     f"the DICOM tag disagree (the CSV/path value is kept), e.g. {shown}")
        moves = entry.heldout_moves
        if moves and moves.n:
            example = moves.examples[0]
            lines.append(
                f"ingest: WARNING: {moves.n} image{'' if moves.n == 1 else 's'} moved across the held-out line by "
                f"the {name} disagreement, e.g. {example.file}: kept {example.kept!r} ({example.kept_split}, "
                f"{example.kept_source}) but its {example.other_source} says {example.other!r} "
                f"({example.tag_split}). Check the CSV's {name} column; held-out results rest on it."
            )
    return lines
