"""The model-selection rules (docs/design/metrics.md; DomainBed's ``model_selection.SelectionMethod``): each rule is
one object that names itself, says which evaluation-record key it maximises and on which split its predictions must
not be constant, and how tables and sentences write it.

- ``training_domain``: pooled validation accuracy of the training domains (the default, the only honest one when
  nothing else is labelled).
- ``leave_one_domain_out``: accuracy on a training domain held out of training (runs with ``holdout_domain``; a
  sweep averages it over the held-out domains).
- ``ood_validation``: accuracy on the labelled validation hospital (``ood_val`` split), WILDS-style.
- ``oracle``: test-domain accuracy. An upper bound only, never a model selection: labelled so everywhere.

No rule ever selects a constant predictor (all predictions on its selection set one class); train's
``pipeline/train/selection.py`` tracks the choice, evaluate, results and the report only name and order rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.errors import ConfigError


@dataclass(frozen=True)
class SelectionMethod:
    """One selection rule. ``score_key``: the evaluation record's key it maximises (train's history lines);
    ``split``: the split whose thresholded predictions must not all be one class (``predicts_constant[split]``);
    ``order``: its place in tables (lower first); ``upper_bound``: it reads the test domain, so it is an upper bound,
    never a selection; ``note``: the sentence written beside an upper bound in selection.json and meta.json."""

    name: str
    score_key: str
    split: str
    label: str
    short_label: str
    order: int
    upper_bound: bool = False
    note: str | None = None

    def score(self, record: dict[str, Any]) -> tuple[float | None, bool]:
        """``(score, constant)`` of one evaluation record (score None when the record has no ``score_key``)."""
        constant = bool((record.get("predicts_constant") or {}).get(self.split))
        return record.get(self.score_key), constant


TRAINING_DOMAIN = SelectionMethod("training_domain", "val_acc", "val", "training-domain validation",
                                  "training-domain val.", 0)
LEAVE_ONE_DOMAIN_OUT = SelectionMethod("leave_one_domain_out", "holdout_acc", "holdout", "leave-one-domain-out",
                                       "leave-one-domain-out", 1)
OOD_VALIDATION = SelectionMethod("ood_validation", "ood_val_acc", "ood_val", "OOD validation hospital",
                                 "OOD val. hospital", 2)
ORACLE = SelectionMethod("oracle", "test_acc", "test", "oracle (test hospital: upper bound only)",
                         "oracle (upper bound)", 3, upper_bound=True,
                         note="oracle: test-domain accuracy, an upper bound only, not a valid model selection")

# every rule in table order; the registry below is built from it
SELECTION_METHODS: tuple[SelectionMethod, ...] = tuple(
    sorted((TRAINING_DOMAIN, LEAVE_ONE_DOMAIN_OUT, OOD_VALIDATION, ORACLE), key=lambda m: m.order))
RULES: dict[str, SelectionMethod] = {m.name: m for m in SELECTION_METHODS}
RULE_NAMES: tuple[str, ...] = tuple(RULES)
UPPER_BOUND_RULES: tuple[str, ...] = tuple(m.name for m in SELECTION_METHODS if m.upper_bound)


def get_rule(name: str) -> SelectionMethod:
    """The rule called ``name``; ConfigError listing the valid names otherwise."""
    try:
        return RULES[str(name)]
    except KeyError:
        raise ConfigError(f"selection rule {name!r} is unknown; valid rules: {', '.join(RULE_NAMES)}") from None


def rule_order(name: Any) -> int:
    """A rule's place in tables; unknown names after every known rule."""
    rule = RULES.get(str(name)) if name is not None else None
    return rule.order if rule is not None else len(RULES)


def rule_label(name: Any, short: bool = False) -> str:
    """How a rule is written: in full in sentences, short in tables and legends; an unknown name as it is spelled,
    a missing one as "unstated"."""
    if not name:
        return "unstated"
    rule = RULES.get(str(name))
    if rule is None:
        return str(name)
    return rule.short_label if short else rule.label


def is_upper_bound(name: Any) -> bool:
    """True for a rule that reads the test domain (the oracle): an upper bound, never a model selection."""
    rule = RULES.get(str(name))
    return bool(rule is not None and rule.upper_bound)
