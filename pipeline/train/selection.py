"""Model selection during training (docs/design/metrics.md, DomainBed): which evaluation of a run (checkpoint) each
rule picks. The rules themselves (their score key, the split that must not be constant, upper bound or not) are
defined once in pipeline/protocol/selection.py; this module tracks the best evaluation per rule.

No rule ever selects a constant predictor (all predictions on its selection set one class): such evaluations are
skipped and counted; a rule whose every evaluation was constant selects nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.protocol.selection import ORACLE, RULES, get_rule

# the sentence beside the oracle's choice in selection.json and meta.json (kept as a name: tests import it here)
ORACLE_LABEL = ORACLE.note


def available_rules(record: dict[str, Any]) -> list[str]:
    """Rules whose score exists in an evaluation record, in table order."""
    return [name for name, rule in RULES.items() if record.get(rule.score_key) is not None]


def rule_score(record: dict[str, Any], rule: str) -> tuple[float | None, bool]:
    """``(score, constant)`` of one evaluation record under ``rule`` (score None when unavailable); ConfigError
    listing the valid rules for an unknown one."""
    return get_rule(rule).score(record)


@dataclass
class Choice:
    step: int | None = None
    score: float | None = None
    constant_skipped: int = 0
    evaluations: int = 0

    def reason(self, rule: str) -> str:
        """Why this rule selected what it did (or nothing): the console line and evaluate's ``selection.reason``."""
        method = get_rule(rule)
        key, split = method.score_key, method.split
        if self.step is not None:
            return (f"highest {key} ({self.score:.4g}) at step {self.step} over {self.evaluations} evaluations, "
                    f"{self.constant_skipped} skipped as constant predictors")
        if self.constant_skipped:
            return (f"every one of the {self.evaluations} evaluations predicted one class on its {split} selection "
                    "set (constant predictor)")
        return f"no evaluation logged {key}"

    def to_json(self, rule: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "step": self.step,
            "score": self.score,
            "selected": self.step is not None,
            # True only when the rule found no non-constant checkpoint (then nothing is selected).
            "constant_predictor": self.step is None and self.constant_skipped > 0,
            "constant_evaluations_skipped": self.constant_skipped,
            "evaluations": self.evaluations,
            "reason": self.reason(rule),
        }
        method = get_rule(rule)
        if method.upper_bound:
            out["label"] = method.note
        return out


class SelectionTracker:
    """Best evaluation so far per rule (earliest wins ties); ``observe`` returns the rules that improved. An unknown
    rule name is a ConfigError listing the valid ones."""

    def __init__(self, rules: list[str]) -> None:
        self.choices = {get_rule(rule).name: Choice() for rule in rules}

    def observe(self, step: int, record: dict[str, Any]) -> list[str]:
        improved = []
        for rule, choice in self.choices.items():
            score, constant = rule_score(record, rule)
            if score is None:
                continue
            choice.evaluations += 1
            if constant:
                choice.constant_skipped += 1
                continue
            if choice.score is None or score > choice.score:
                choice.step, choice.score = step, float(score)
                improved.append(rule)
        return improved

    def summary(self) -> dict[str, dict[str, Any]]:
        return {rule: choice.to_json(rule) for rule, choice in self.choices.items()}

    def state_dict(self) -> dict[str, Any]:
        return {rule: vars(choice).copy() for rule, choice in self.choices.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.choices = {rule: Choice(**values) for rule, values in state.items()}
