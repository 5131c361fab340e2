"""The one definition of shortcut-conflicting and shortcut-aligned images (train, evaluate, audit and the report use
it; tests/protocol/test_shortcuts.py pins it).

A shortcut attribute (``position``, ``view``, ... : a manifest column) has a *direction* estimated on the TRAIN
split's labelled rows: the values whose positive prevalence is above the prevalence over the rows with a known
value are positive-associated, the other values seen there negative-associated. ``unknown``, missing and values
never seen in the train split's labelled rows are neither. Then, per labelled image::

    conflict = (label 1 and a negative-associated value) or (label 0 and a positive-associated value)
    aligned  = (label 1 and a positive-associated value) or (label 0 and a negative-associated value)

On the synthetic cohort (supine images are COVID-associated in training) this is exactly the older position rule:
conflict = COVID and erect, or no finding and supine.

A direction is *measurable* only with >= 2 known levels on the labelled train rows, one positive- and one
negative-associated (:func:`direction_problem`); an attribute with one known level (``erect`` beside ``unknown``)
would call every negative image of that level "conflicting" and measure nothing, so its masks are empty. The
headline conflict/aligned numbers use the first measurable attribute (:func:`headline_attribute`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from pipeline.protocol.labels import NEGATIVE, POSITIVE

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_ATTRIBUTES: tuple[str, ...] = ("position", "view")
UNKNOWN_VALUES = frozenset({"unknown", "", "nan", "none", "<na>"})


@dataclass(frozen=True)
class ShortcutDirection:
    """One attribute's direction, as estimated on the train split's labelled rows."""

    attribute: str
    positive_associated: tuple[str, ...]
    negative_associated: tuple[str, ...]
    train_prevalence: float | None   # P(label = 1) over the train split's labelled rows; None without any
    n_train: int                     # labelled train rows the direction was estimated on
    value_prevalence: dict[str, float] = field(default_factory=dict, compare=False)

    def describe(self) -> dict[str, Any]:
        """The direction as metrics.json writes it; a direction that is not estimable (:func:`direction_problem`)
        lists no positive/negative-associated values (the levels stay in ``value_prevalence``) and says why."""
        sides = associated_values(self)
        out = {**sides, "train_prevalence": self.train_prevalence, "n_train": self.n_train,
               "value_prevalence": dict(self.value_prevalence)}
        problem = direction_problem(self)
        if problem is not None:
            out["not_measured"] = {"positive_associated": problem, "negative_associated": problem}
        return out


def associated_values(direction: ShortcutDirection) -> dict[str, list[str]]:
    """{positive_associated, negative_associated}: both empty when the direction is not estimable (one known level,
    or every level at the same positive rate): a side listed there would claim a direction that was not measured."""
    if direction_problem(direction) is not None:
        return {"positive_associated": [], "negative_associated": []}
    return {"positive_associated": list(direction.positive_associated),
            "negative_associated": list(direction.negative_associated)}


def labelled_mask(frame: pd.DataFrame) -> np.ndarray:
    """bool (N,): rows whose label is known (works for int64 labels and nullable Int64 with pd.NA)."""
    return frame["label"].notna().to_numpy(dtype=bool)


def label_values(frame: pd.DataFrame) -> np.ndarray:
    """int64 (N,) labels with -1 where the label is unknown (pd.NA/NaN)."""
    return frame["label"].astype("Float64").fillna(-1).to_numpy(dtype=np.float64).astype(np.int64)


def label_strings(frame: pd.DataFrame) -> np.ndarray:
    """The labels as text ("0", "1", "unknown"): strata and per-label groups."""
    return np.where(labelled_mask(frame), label_values(frame).astype(str), "unknown")


def attribute_values(frame: pd.DataFrame, attribute: str) -> np.ndarray:
    """Attribute values as text; missing values read 'unknown' (as the manifest spells it)."""
    column = frame[attribute]
    text = column.astype(str).to_numpy()
    return np.where(column.isna().to_numpy() | np.isin(np.char.lower(text.astype(str)), list(UNKNOWN_VALUES)),
                    "unknown", text)


def shortcut_attributes(ingest_dir: str | Path | None, frame: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(attributes present in the manifest, notes): ``summary.json["shortcut_attributes"]`` of the ingest dir, else
    :data:`DEFAULT_ATTRIBUTES`; attributes missing from the manifest are dropped with a note saying so."""
    notes: list[str] = []
    wanted: list[str] = list(DEFAULT_ATTRIBUTES)
    summary = Path(ingest_dir) / "summary.json" if ingest_dir is not None else None
    if summary is not None and summary.is_file():
        from pipeline.artefacts.ingest_summary import IngestSummary

        listed = IngestSummary.load(summary).shortcut_attributes
        if isinstance(listed, list) and listed:
            wanted = [str(a) for a in listed]
        else:
            notes.append(f"{summary} has no shortcut_attributes list: using {list(DEFAULT_ATTRIBUTES)}")
    else:
        notes.append(f"no ingest summary.json: shortcut attributes default to {list(DEFAULT_ATTRIBUTES)}")
    present = [a for a in dict.fromkeys(wanted) if a in frame.columns]
    missing = [a for a in wanted if a not in frame.columns]
    if missing:
        notes.append(f"shortcut attributes {missing} are not manifest columns: ignored")
    return present, notes


def estimate_direction(train: pd.DataFrame, attribute: str) -> ShortcutDirection:
    """The direction of ``attribute`` from ``train`` (the train split; unlabelled rows are left out here)."""
    known = labelled_mask(train)
    y = label_values(train)[known]
    values = attribute_values(train, attribute)[known]
    if y.size == 0:
        return ShortcutDirection(attribute, (), (), None, 0)
    overall = float(y.mean())
    prevalence = {str(v): float(y[values == v].mean()) for v in sorted(set(values)) if v != "unknown"}
    # compared with the rows of a known value: unknown rows (often one collection lacking the field) must not
    # push every known level to one side
    valued = values != "unknown"
    reference = float(y[valued].mean()) if valued.any() else overall
    positive = tuple(v for v, p in prevalence.items() if p > reference)
    negative = tuple(v for v, p in prevalence.items() if p <= reference)
    return ShortcutDirection(attribute, positive, negative, overall, int(y.size), prevalence)


def direction_problem(direction: ShortcutDirection) -> str | None:
    """Why ``direction`` cannot define conflicting/aligned images (None when it can): it needs >= 2 known levels
    on the train split's labelled rows, at least one positive- and one negative-associated."""
    levels = sorted([*direction.positive_associated, *direction.negative_associated])
    name = direction.attribute
    if direction.n_train == 0:
        return f"{name}: the train split has no labelled rows to estimate a direction on"
    if len(levels) < 2:
        return (f"{name}: {len(levels)} known level ({levels or 'only unknown'}) on the train split's labelled rows; "
                "a direction needs >= 2")
    if not direction.positive_associated or not direction.negative_associated:
        return f"{name}: its known levels {levels} have the same positive rate on the train split: no direction"
    return None


def headline_attribute(directions: dict[str, ShortcutDirection]) -> tuple[str | None, str | None]:
    """(the first measurable attribute of ``directions`` (their order: summary.json's list), None) or (None, the
    reason naming each attribute and why it cannot be measured)."""
    problems = []
    for attribute, direction in directions.items():
        problem = direction_problem(direction)
        if problem is None:
            return attribute, None
        problems.append(problem)
    if not problems:
        return None, "no shortcut attribute in the manifest"
    return None, "no shortcut attribute is measurable: " + "; ".join(problems)


def skipped_attribute_warning(directions: dict[str, ShortcutDirection]) -> str | None:
    """A warning when the headline attribute is not the first listed one (or none is measurable), naming why."""
    attribute, reason = headline_attribute(directions)
    if attribute is None:
        return f"conflict/aligned accuracy not measured: {reason}" if directions else None
    skipped = [problem for a in directions if a != attribute and (problem := direction_problem(directions[a]))]
    first = next(iter(directions))
    if first == attribute:
        return None
    return (f"conflict/aligned accuracy use {attribute!r}, not {first!r}: "
            + "; ".join(skipped[:list(directions).index(attribute)]))


def estimate_directions(manifest: pd.DataFrame, attributes: list[str]) -> dict[str, ShortcutDirection]:
    """Directions of every attribute, estimated on the manifest's ``train`` split."""
    train = manifest[manifest["split"] == "train"]
    return {a: estimate_direction(train, a) for a in attributes}


def conflict_aligned(frame: pd.DataFrame, direction: ShortcutDirection) -> tuple[np.ndarray, np.ndarray]:
    """(conflict, aligned) bool (N,) for the rows of ``frame``; unlabelled rows and rows whose value is unknown or
    has no direction are in neither, and every row when the direction is not measurable (:func:`direction_problem`)."""
    y = label_values(frame)
    if direction_problem(direction) is not None:
        empty = np.zeros(len(frame), dtype=bool)
        return empty, empty.copy()
    values = attribute_values(frame, direction.attribute)
    pos = np.isin(values, list(direction.positive_associated))
    neg = np.isin(values, list(direction.negative_associated))
    conflict = ((y == POSITIVE) & neg) | ((y == NEGATIVE) & pos)
    aligned = ((y == POSITIVE) & pos) | ((y == NEGATIVE) & neg)
    return conflict, aligned
