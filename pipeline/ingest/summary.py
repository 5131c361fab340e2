"""``summary.json``: what was ingested, what was rejected, and which acquisition factors predict the label.

The confounding table is the first thing a user should read: if position (or the site) predicts the label far
better than the label's base rate, a classifier can score well without looking at the lungs.
``accuracy`` of a factor = accuracy of predicting, for each value of the factor, its majority label;
``chance`` = accuracy of always predicting the overall majority label; ``lift`` = accuracy - chance.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


def _predictiveness(values: pd.Series, labels: pd.Series) -> dict[str, float]:
    n = len(labels)
    if n == 0:
        return {"n": 0, "accuracy": float("nan"), "chance": float("nan"), "lift": float("nan")}
    positives = labels.groupby(values).sum()
    totals = labels.groupby(values).size()
    accuracy = float(np.maximum(positives, totals - positives).sum() / n)
    prevalence = float(labels.mean())
    chance = max(prevalence, 1 - prevalence)
    return {"n": int(n), "accuracy": round(accuracy, 4), "chance": round(chance, 4), "lift": round(accuracy - chance, 4)}


def confounding(frame: pd.DataFrame, *, min_group_size: int, warning_lift: float) -> dict[str, Any]:
    """Label prevalence per domain, P(label | position) per site, and warnings when a factor predicts the label."""
    labels = frame["label"].astype(int)
    prevalence = {
        str(domain): {"n": int(len(group)), "prevalence": round(float(group.mean()), 4)}
        for domain, group in labels.groupby(frame["domain"])
    }
    by_position: dict[str, dict[str, dict[str, float]]] = {}
    for (site, position), group in labels.groupby([frame["site"], frame["position"]]):
        by_position.setdefault(str(site), {})[str(position)] = {
            "n": int(len(group)), "p_label": round(float(group.mean()), 4),
        }
    factors = []
    for site, group in frame.groupby("site"):
        if len(group) >= min_group_size:
            factors.append({"factor": "position", "scope": f"site={site}",
                            **_predictiveness(group["position"], group["label"].astype(int))})
    if len(frame) >= min_group_size:
        factors.append({"factor": "position", "scope": "all", **_predictiveness(frame["position"], labels)})
        factors.append({"factor": "site", "scope": "all", **_predictiveness(frame["site"], labels)})
        for column in ("age_group", "view"):
            factors.append({"factor": column, "scope": "all", **_predictiveness(frame[column], labels)})
    warnings = [
        f"{f['factor']} predicts the label with accuracy {f['accuracy']:.2f} vs {f['chance']:.2f} by chance "
        f"({f['scope']}, n={f['n']}): a model can learn this shortcut instead of the disease."
        for f in factors
        if f["factor"] in ("position", "site") and f["lift"] >= warning_lift
    ]
    return {
        "label_prevalence_per_domain": prevalence,
        "p_label_given_position_per_site": by_position,
        "factors": factors,
        "warning_lift": warning_lift,
        "warnings": warnings,
    }


def age_distribution(frame: pd.DataFrame) -> dict[str, Any]:
    out = {}
    for site, group in frame.groupby("site"):
        ages = group["age_years"].astype(float)
        known = ages.dropna()
        stats = {"n": int(len(ages)), "n_unknown": int(ages.isna().sum())}
        if len(known):
            q = np.percentile(known, [0, 25, 50, 75, 100])
            stats.update({"mean": round(float(known.mean()), 2), "min": round(float(q[0]), 2),
                          "q25": round(float(q[1]), 2), "median": round(float(q[2]), 2),
                          "q75": round(float(q[3]), 2), "max": round(float(q[4]), 2)})
        stats["age_group"] = {str(k): int(v) for k, v in group["age_group"].value_counts().sort_index().items()}
        out[str(site)] = stats
    return out


def counts(frame: pd.DataFrame) -> dict[str, Any]:
    nested: dict[str, dict[str, dict[str, int]]] = {}
    for (site, position, label), n in frame.groupby(["site", "position", "label"]).size().items():
        nested.setdefault(str(site), {}).setdefault(str(position), {})[str(int(label))] = int(n)
    return nested


def build_summary(frame: pd.DataFrame, rejects: pd.DataFrame, *, extra: dict[str, Any],
                  min_group_size: int, warning_lift: float) -> dict[str, Any]:
    notes: dict[str, int] = {}
    for text in frame.get("decode_notes", []):
        for note in filter(None, str(text).split("; ")):
            key = note.split("(")[0].strip()
            notes[key] = notes.get(key, 0) + 1
    return {
        "n_images": int(len(frame)),
        "n_rejected": int(len(rejects)),
        "per_split": {str(k): int(v) for k, v in frame["split"].value_counts().sort_index().items()},
        "per_site": {str(k): int(v) for k, v in frame["site"].value_counts().sort_index().items()},
        "counts_site_position_label": counts(frame),
        "age_per_site": age_distribution(frame),
        "rejects_by_reason": {str(k): int(v) for k, v in rejects["reason"].value_counts().sort_index().items()},
        "decode_notes": dict(sorted(notes.items())),
        "duplicates": {
            "groups": int(frame.loc[frame["duplicate_group"] != "", "duplicate_group"].nunique()),
            "images": int((frame["duplicate_group"] != "").sum()),
        },
        "confounding": confounding(frame, min_group_size=min_group_size, warning_lift=warning_lift),
        **extra,
    }
