"""metrics.json -> metrics.csv: one flat row per (model, scope, group)."""

from __future__ import annotations

import csv
import io
from typing import Any

CSV_COLUMNS = (
    "model", "algorithm", "seed", "selection_rule", "split", "scope", "group", "n", "accuracy", "balanced_accuracy",
    "auroc", "auroc_ci_low", "auroc_ci_high", "ece", "conflict_accuracy", "aligned_accuracy", "conflict_attribute",
    "n_conflict", "n_aligned", "n_unknown", "threshold", "n_pos", "n_neg", "majority_accuracy", "constant_predictor",
    "selected",
)


def _row(name: str, entry: dict[str, Any], scope: str, group: str, block: dict[str, Any]) -> dict[str, Any]:
    ci = block.get("auroc_ci") or [None, None]
    return {
        "model": name, "algorithm": entry.get("algorithm"), "seed": entry.get("seed"),
        "selection_rule": entry.get("selection_rule"), "split": entry.get("split"), "scope": scope, "group": group,
        "n": block.get("n"), "accuracy": block.get("accuracy"), "balanced_accuracy": block.get("balanced_accuracy"),
        "auroc": block.get("auroc"), "auroc_ci_low": ci[0], "auroc_ci_high": ci[1], "ece": block.get("ece"),
        "conflict_accuracy": block.get("conflict_accuracy"), "aligned_accuracy": block.get("aligned_accuracy"),
        # the attribute those two are measured on, and its counts (empty: none measurable)
        "conflict_attribute": block.get("conflict_attribute"), "n_conflict": block.get("n_conflict"),
        "n_aligned": block.get("n_aligned"), "n_unknown": block.get("n_unknown"),
        "threshold": entry.get("threshold"),
        # empty cells where a number is missing (the reason is in metrics.json's not_measured)
        "n_pos": block.get("n_pos"), "n_neg": block.get("n_neg"), "majority_accuracy": block.get("majority_accuracy"),
        "constant_predictor": block.get("constant_predictor"),
        # false: the train stage selected no checkpoint (the weights are the final ones); empty for the baseline
        "selected": (entry.get("selection") or {}).get("selected"),
    }


def metrics_rows(metrics: dict[str, Any]) -> list[dict[str, Any]]:
    entries = dict(metrics["models"])
    entries["metadata_baseline"] = {**metrics["metadata_baseline"], "algorithm": "metadata_baseline",
                                    "selection_rule": "none", "split": metrics["split"]}
    rows = []
    for name, entry in entries.items():
        if not entry.get("overall"):
            continue
        rows.append(_row(name, entry, "overall", "", entry["overall"]))
        for site, block in entry["per_site"].items():
            rows.append(_row(name, entry, "site", site, block))
        for group, block in entry["per_group"].items():
            rows.append(_row(name, entry, "group", group, block))
        if entry.get("mean_site"):
            rows.append(_row(name, entry, "mean_site", "", entry["mean_site"]))
    return rows


def metrics_csv(metrics: dict[str, Any]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(metrics_rows(metrics))
    return buffer.getvalue()
