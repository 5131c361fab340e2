"""``RUN/selection.json`` (one run: what each selection rule chose, pipeline/train/selection.py) and the sweep's
``SWEEP/selection.json`` (per rule, the best hyper-parameter draw over seeds, pipeline/train/sweep.py), plus the
selection truth evaluate and audit attach to every model entry (pipeline/runs.py).

Neither selection.json carries a ``schema_version`` key (their content predates the typed models and is kept
byte-identical); :meth:`Artefact.load` reads a file without one as version 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

from pipeline.artefacts.base import Artefact, Block
from pipeline.errors import DataError
from pipeline.protocol.selection import RULE_NAMES


class RuleChoice(Block):
    """What one rule chose over a run's evaluations (train/selection.Choice.to_json). Files of older versions (and
    hand-written ones) hold only ``step`` and ``score``: the other keys are read as None and written back only when
    they were given."""

    OMIT_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"label"})
    OMIT_WHEN_UNSET: ClassVar[frozenset[str]] = frozenset(
        {"selected", "constant_predictor", "constant_evaluations_skipped", "evaluations", "reason"})

    step: int | None  # the selected evaluation's step (None: nothing selected)
    score: float | None  # its score under the rule (accuracy in [0, 1])
    selected: bool | None = None
    # True only when the rule found no non-constant checkpoint (then nothing is selected)
    constant_predictor: bool | None = None
    constant_evaluations_skipped: int | None = None
    evaluations: int | None = None
    reason: str | None = None
    label: str | None = None  # oracle only: an upper bound, never a model selection


class SelectionFile(Artefact):
    """RUN/selection.json: one entry per rule the run's data allows (absent rule: not available)."""

    FILENAME: ClassVar[str] = "selection.json"
    STAGE: ClassVar[str] = "train"
    SCHEMA_VERSION: ClassVar[int] = 1
    OMIT_WHEN_NONE: ClassVar[frozenset[str]] = frozenset(RULE_NAMES)

    # in the order train evaluates them (pipeline/train/loop.py _rules_for)
    training_domain: RuleChoice | None = None
    leave_one_domain_out: RuleChoice | None = None
    ood_validation: RuleChoice | None = None
    oracle: RuleChoice | None = None

    def rules(self) -> dict[str, RuleChoice]:
        """rule -> choice, for the rules present."""
        return {name: getattr(self, name) for name in type(self).model_fields if getattr(self, name) is not None}


class SweepChoice(Block):
    """One rule's best draw across a sweep's runs (sweep.select_across_runs); no eligible draw: ``note`` says why."""

    OMIT_WHEN_NONE: ClassVar[frozenset[str]] = frozenset(
        {"scores", "hparams", "runs", "checkpoint_rule", "note", "label"})

    draw: int | None
    score: float | None  # mean over the draw's runs
    scores: list[float] | None = None
    # the draw's hyper-parameters (open-ended: each DomainBed algorithm has its own names)
    hparams: dict[str, int | float | str | bool | None] | None = None
    runs: list[str] | None = None  # run folders relative to the sweep folder
    checkpoint_rule: str | None = None
    note: str | None = None
    label: str | None = None


class SweepSelectionFile(Artefact):
    """SWEEP/selection.json of a sweep without leave-one-hospital-out: one choice per rule."""

    FILENAME: ClassVar[str] = "selection.json"
    STAGE: ClassVar[str] = "train"
    SCHEMA_VERSION: ClassVar[int] = 1
    OMIT_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"leave_one_domain_out"})

    # in the order the sweep writes them (pipeline/train/sweep.py run_sweep)
    training_domain: SweepChoice
    ood_validation: SweepChoice
    oracle: SweepChoice
    leave_one_domain_out: SweepChoice | None = None


def read_sweep_selection(path: str | Path) -> SweepSelectionFile | dict[str, SweepSelectionFile]:
    """A sweep's selection.json: per rule, or with leave-one-hospital-out {test hospital: per rule}."""
    path = Path(path)
    if path.is_dir():
        path = SweepSelectionFile.path_in(path)
    try:
        data: Any = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"train: {path} must be a readable JSON sweep selection, got {exc}. Re-run the sweep.") from None
    if isinstance(data, dict) and data and "training_domain" not in data:
        return {h: SweepSelectionFile.from_dict(v, where=f"{path} [{h}]") for h, v in data.items()}
    return SweepSelectionFile.from_dict(data, where=path)


class ConstantAtSelection(Block):
    """evaluate's record of train's "every evaluation constant" finding (evaluate/selection_facts.py)."""

    rule: str
    split: str  # the rule's selection split (val, holdout, ood_val, test)
    threshold: float  # train's arg-max cut-off, P(label = 1) >= 0.5
    n: int | None  # labelled images of that set (None: not countable here)
    evaluations: int | None
    n_not_measured: str | None  # why ``n`` is None
    text: str


class SelectionTruth(Block):
    """{rule, step, constant_predictor, selected, reason, source, evaluations} of one checkpoint as the train stage
    decided it (pipeline/runs.py selection_truth): from selection.json, else the model file's meta."""

    rule: str
    step: int | None
    constant_predictor: bool
    selected: bool
    reason: str
    source: str  # "selection.json" or "model meta"
    evaluations: int | None
