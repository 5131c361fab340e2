"""Selection across runs (DomainBed's ``model_selection``: per rule, the hparam draw with the best mean score).

A sweep (``pipeline/train/sweep.py``) writes it into ``selection.json``; ``cxr-fishr results``
(``pipeline/results/tables.py``) recomputes it per algorithm and test hospital. Both read the same definition here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pipeline.protocol.selection import LEAVE_ONE_DOMAIN_OUT, ORACLE, TRAINING_DOMAIN


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def select_across_runs(runs: list[dict[str, Any]], rules: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``runs``: {draw, trial_seed, holdout, dir, hparams, selection}. Per rule, the best draw by mean score.

    A rule's score of a run is its own checkpoint choice (``selection[rule]["score"]``); leave-one-domain-out
    averages the held-out runs' scores and points at the draw's full runs (their training_domain checkpoint). A draw
    is eligible only if every one of its scored runs selected a checkpoint (none was a constant predictor
    throughout); ties keep the lower draw. A rule no draw is eligible for gets ``{"draw": None, "score": None,
    "note": ...}``; the oracle's choice carries its upper-bound label."""
    out: dict[str, dict[str, Any]] = {}
    draws = sorted({r["draw"] for r in runs})
    for rule in rules:
        lodo = rule == LEAVE_ONE_DOMAIN_OUT.name
        best: dict[str, Any] | None = None
        for draw in draws:
            full = [r for r in runs if r["draw"] == draw and r["holdout"] is None]
            scored = [r for r in runs if r["draw"] == draw and (r["holdout"] is not None) == lodo]
            scores = [r["selection"][rule]["score"] for r in scored
                      if rule in r["selection"] and r["selection"][rule]["score"] is not None]
            mean = _mean(scores)
            # A draw with any run that selected nothing (constant predictor throughout) is not eligible.
            if mean is None or len(scores) < len(scored) or not full or (best is not None and mean <= best["score"]):
                continue
            best = {"draw": draw, "score": mean, "scores": scores, "hparams": full[0]["hparams"],
                    "runs": [r["dir"] for r in full],
                    "checkpoint_rule": TRAINING_DOMAIN.name if lodo else rule}
        out[rule] = best or {"draw": None, "score": None, "note": "no run had a non-constant checkpoint"}
        if rule == ORACLE.name:
            out[rule]["label"] = ORACLE.note
    return out
