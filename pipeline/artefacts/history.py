"""``RUN/history.jsonl``: one JSON object per line, written by the train loop (pipeline/train/loop.py).

Training lines are ``{step, <loss terms>}`` (every step); evaluation lines ``{step, val_acc, ...}`` (every
``eval_every`` steps, pipeline/train/monitor.py evaluate). An evaluation line is one holding ``val_acc``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, ClassVar

from pydantic import ConfigDict, ValidationError, model_validator

from pipeline.artefacts.base import Block, validation_problems
from pipeline.errors import DataError

HISTORY_FILENAME = "history.jsonl"


class TrainingLine(Block):
    """``{step, <loss terms>}``: the algorithm's loss terms of that step (the union batch's mean under DDP).

    The terms are open-ended (each DomainBed algorithm names its own: ``loss``, ``nll``, ``penalty``, ...), so they
    are kept as extra keys, each a finite float (a non-finite term stops training before it is logged)."""

    model_config = ConfigDict(extra="allow")

    step: int

    @model_validator(mode="after")
    def _finite_terms(self) -> TrainingLine:
        for name, value in (self.model_extra or {}).items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ValueError(f"loss term {name!r} must be a finite number, got {value!r}")
        return self

    @property
    def terms(self) -> dict[str, float]:
        return {name: float(value) for name, value in (self.model_extra or {}).items()}


class FishrDistanceNotMeasured(Block):
    OMIT_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"fishr_distance"})

    fishr_distance: str | None = None
    fishr_distance_relative: str


class EvaluationLine(Block):
    """One evaluation of the run (monitor.evaluate): accuracies in [0, 1] of the thresholded arg-max predictions,
    None where the set is empty or absent. ``holdout_*`` only for runs with a held-out training domain.

    The train loop writes every key but ``holdout_*`` and ``fishr_distance_not_measured``; lines of older versions
    (and hand-written ones) hold fewer, so every key but ``step`` and ``val_acc`` may be absent: read as None and
    never written back when absent."""

    OMIT_WHEN_UNSET: ClassVar[frozenset[str]] = frozenset({
        "val_threshold", "val_acc_per_domain", "conflict_attribute", "ood_val_acc", "ood_val_conflict_acc",
        "test_acc", "test_conflict_acc", "holdout_acc", "holdout_conflict_acc", "predicts_constant",
        "fishr_distance", "fishr_distance_relative", "fishr_distance_not_measured"})

    step: int
    val_acc: float | None  # pooled validation rows of the training domains
    val_threshold: float | None = None  # the balanced-accuracy threshold on those rows (None: one class only)
    val_acc_per_domain: dict[str, float | None] | None = None  # training domain -> its validation accuracy
    conflict_attribute: str | None = None  # the shortcut attribute of the *_conflict_acc keys (None: not measurable)
    ood_val_acc: float | None = None
    ood_val_conflict_acc: float | None = None
    test_acc: float | None = None
    test_conflict_acc: float | None = None
    holdout_acc: float | None = None
    holdout_conflict_acc: float | None = None
    # split -> every prediction one class (None: empty set); open-ended: the splits this run evaluates
    predicts_constant: dict[str, bool | None] | None = None
    fishr_distance: float | None = None  # mean squared deviation of the domains' head-gradient variances
    fishr_distance_relative: float | None = None
    fishr_distance_not_measured: FishrDistanceNotMeasured | None = None

    def value(self, key: str) -> float | None:
        """The number logged under ``key`` (e.g. ``test_acc``); None when this line did not log it."""
        if key not in type(self).model_fields:
            raise KeyError(f"history: {key!r} is not an evaluation-line key; expected one of "
                           f"{sorted(type(self).model_fields)}")
        value = getattr(self, key)
        return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


HistoryLine = TrainingLine | EvaluationLine


def parse_history_line(data: Any, *, where: str) -> HistoryLine:
    """One parsed line as its model (an evaluation line holds ``val_acc``); a DataError names ``where``."""
    if not isinstance(data, dict):
        raise DataError(f"train: {where} must be a JSON object, got {type(data).__name__}. Re-run `cxr-fishr train`.")
    model = EvaluationLine if "val_acc" in data else TrainingLine
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = validation_problems(exc)
        raise DataError(f"train: {where} does not match {model.__name__}: {problems}. Re-run `cxr-fishr train`.") \
            from None


def read_history(run_dir: str | Path) -> list[HistoryLine]:
    """The lines of ``run_dir``/history.jsonl as typed lines (empty when the file is absent); a line that is not
    JSON or does not match its model is a DataError naming the file and the line number."""
    path = Path(run_dir) / HISTORY_FILENAME
    if not path.is_file():
        return []
    lines: list[HistoryLine] = []
    for number, text in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not text.strip():
            continue
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            raise DataError(f"train: history line must be JSON, got {text[:60]!r} ({path} line {number}). "
                            "Re-run `cxr-fishr train` into a new --out.") from None
        lines.append(parse_history_line(data, where=f"{path} line {number}"))
    return lines


def evaluation_lines(lines: list[HistoryLine]) -> list[EvaluationLine]:
    return [line for line in lines if isinstance(line, EvaluationLine)]
