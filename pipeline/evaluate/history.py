"""Test-hospital figures as the mean over the last evaluations of a run, and means over seeds.

Over one run's evaluations the spread is the population std (the last k evaluations are all there is of that run);
over seeds it is pipeline/artefacts/seeds.py SeedSpread (sample sd)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pipeline.artefacts.history import EvaluationLine, HistoryLine

HISTORY_KEYS = ("test_acc", "test_conflict_acc", "ood_val_acc", "val_acc")


def _stats(values: list[float]) -> dict[str, Any] | None:
    """Mean/std/min/max over one run's evaluations; one evaluation has no spread (std None + reason, never 0.0)."""
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=np.float64)
    if arr.size == 0:
        return None
    out: dict[str, Any] = {"mean": float(arr.mean()), "std": float(arr.std()) if arr.size > 1 else None,
                           "min": float(arr.min()), "max": float(arr.max()), "n": int(arr.size)}
    if arr.size == 1:
        out["not_measured"] = {"std": "1 evaluation (n=1): no spread"}
    return out


def summarise_history(lines: Sequence[HistoryLine], last_k: int = 5, up_to_step: int | None = None) -> dict | None:
    """Mean/std/min/max of the HISTORY_KEYS over the last ``last_k`` evaluation lines of history.jsonl (typed lines,
    pipeline/artefacts/history.py; those with val_acc or test_acc), up to ``up_to_step`` (the selected checkpoint's
    step) when given. None when there is no evaluation line."""
    evals = [line for line in lines if isinstance(line, EvaluationLine)
             and (line.val_acc is not None or line.test_acc is not None)]
    if up_to_step is not None:
        evals = [line for line in evals if line.step <= up_to_step] or evals
    evals = evals[-last_k:] if last_k > 0 else evals
    if not evals:
        return None
    return {
        "last_k": last_k,
        "n_evaluations": len(evals),
        "steps": [line.step for line in evals],
        **{key: _stats([line.value(key) for line in evals]) for key in HISTORY_KEYS},
    }


def value_at_step(lines: Sequence[HistoryLine], step: int | None, key: str) -> float | None:
    """``key`` of the evaluation line logged at ``step`` (None when the run logged none there)."""
    for line in lines:
        if step is not None and isinstance(line, EvaluationLine) and line.step == step and line.value(key) is not None:
            return line.value(key)
    return None


def _runs_reason(entries: list[dict[str, Any]], key: str) -> str:
    """Why no run of a group measured mean_site ``key``: the runs' own reasons (evaluate's mean_site.not_measured)."""
    reasons = sorted({str(((e.get("mean_site") or {}).get("not_measured") or {}).get(key) or "no reason recorded")
                      for e in entries})
    return "no run of this group has it measured: " + "; ".join(reasons)


def aggregate_models(models: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Group model entries by ``algorithm|selection_rule``: mean and spread over runs (seeds), each the one
    estimator of the project (pipeline/artefacts/seeds.py SeedSpread: sample sd, None with a reason for one run)."""
    from pipeline.artefacts.seeds import SeedSpread

    def spread(values: list[float | None]) -> dict[str, Any] | None:
        return SeedSpread.from_values(values).block()

    groups: dict[str, list[dict[str, Any]]] = {}
    for entry in models.values():
        groups.setdefault(f"{entry['algorithm']}|{entry['selection_rule']}", []).append(entry)
    out: dict[str, dict[str, Any]] = {}
    for key, entries in groups.items():
        history = [(e.get("history") or {}).get("test_acc") or {} for e in entries]
        out[key] = {
            "algorithm": entries[0]["algorithm"],
            "selection_rule": entries[0]["selection_rule"],
            "upper_bound": entries[0]["upper_bound"],
            "n_runs": len(entries),
            "seeds": [e["seed"] for e in entries],
            "models": [e["name"] for e in entries],
            "mean_site_accuracy": spread([e["mean_site"]["accuracy"] for e in entries]),
            "mean_site_conflict_accuracy": spread([e["mean_site"]["conflict_accuracy"] for e in entries]),
            "mean_site_auroc": spread([e["mean_site"]["auroc"] for e in entries]),
            "history_test_acc": spread([h.get("mean") for h in history]),
        }
        out[key]["not_measured"] = {k: ("no run has a history.jsonl with test_acc" if k == "history_test_acc" else
                                        _runs_reason(entries, k.removeprefix("mean_site_")))
                                    for k, v in out[key].items() if k.startswith(("mean_site_", "history_")) and v is None}
    return out
