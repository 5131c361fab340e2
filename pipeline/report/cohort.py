"""Section 2: the cohort: counts per site x position x label, the shortcut's strength per site, ages, rejects.

Counts come from the manifest's non-identifying columns; the warnings ingest wrote (summary.json) are repeated.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from pipeline.report import figures
from pipeline.report.inputs import ReportInputs
from pipeline.report.tables import Table, cell, num_cell, rate_cell

SPLIT_ORDER = {"train": 0, "val": 0, "ood_val": 1, "test": 2}
LABELS = {0: "no finding", 1: "COVID"}


def _site_order(frame: Any) -> list[str]:
    """Training sites first, then the validation hospital, then the test hospital."""
    role = frame.groupby("site")["split"].agg(lambda s: min(SPLIT_ORDER.get(str(v), 3) for v in s))
    return sorted(role.index.astype(str), key=lambda site: (role[site], site))


def _role(splits: set[str]) -> str:
    if splits & {"train", "val"}:
        return "training"
    if "ood_val" in splits:
        return "validation (OOD)"
    if "test" in splits:
        return "test (OOD)"
    return "/".join(sorted(splits))


def counts_table(frame: Any) -> tuple[Table, dict[str, list[int]]]:
    positions = [p for p in ("erect", "supine", "unknown") if p in set(frame["position"].astype(str))]
    combos = [(p, lab) for p in positions for lab in (0, 1)]
    table = Table(["site", "role", "n", *[f"{p} · {LABELS[lab]}" for p, lab in combos], "COVID share",
                   "position agrees with label"], caption="Images per site, position and label",
                  numeric=[False, False, True, *[True] * len(combos), True, True])
    series: dict[str, list[int]] = {f"{p} · {LABELS[lab]}": [] for p, lab in combos}
    for site in _site_order(frame):
        rows = frame[frame["site"].astype(str) == site]
        counts = Counter(zip(rows["position"].astype(str), rows["label"].astype(int), strict=False))
        known = rows[rows["position"].astype(str) != "unknown"]
        agree = ((known["position"].astype(str) == "supine") == (known["label"].astype(int) == 1)).mean() \
            if len(known) else None
        css = "worst" if agree is not None and (agree >= 0.7 or agree <= 0.3) else ""
        table.add([site, _role(set(rows["split"].astype(str))), cell(len(rows)),
                   *[cell(counts.get(c, 0)) for c in combos], rate_cell(rows["label"].astype(int).mean()),
                   rate_cell(agree, css=css)])
        for p, lab in combos:
            series[f"{p} · {LABELS[lab]}"].append(counts.get((p, lab), 0))
    table.note = ("Position agrees with label = share of images that are COVID and supine, or no finding and erect: "
                  "far from 50% means position predicts the label at that site (highlighted beyond 70% or 30%); "
                  "the test hospital reverses the training hospitals' direction.")
    return table, series


def ages_table(frame: Any) -> tuple[Table, dict[str, list[float]]]:
    table = Table(["site", "n with age", "median age", "IQR", "children", "female"],
                  caption="Age and sex per site", numeric=[False, True, True, False, True, True])
    samples: dict[str, list[float]] = {}
    for site in _site_order(frame):
        rows = frame[frame["site"].astype(str) == site]
        ages = rows["age_years"].dropna().astype(float) if "age_years" in rows else rows.iloc[0:0]
        samples[site] = ages.tolist()
        children = (rows["age_group"].astype(str) == "child").mean() if "age_group" in rows else None
        female = (rows["sex"].astype(str) == "F").mean() if "sex" in rows else None
        iqr = f"{ages.quantile(0.25):.0f}–{ages.quantile(0.75):.0f}" if len(ages) else None
        table.add([site, cell(len(ages)), num_cell(ages.median() if len(ages) else None, digits=0), cell(iqr),
                   rate_cell(children), rate_cell(female)])
    return table, samples


def rejects_table(rejects: list[dict[str, str]] | None) -> Table:
    """Reject counts per reason (file paths are not shown: hospital file names can carry patient names)."""
    table = Table(["reason", "files"], caption="Files ingest rejected, by reason", numeric=[False, True])
    for reason, n in Counter(str(r.get("reason", "unknown")) for r in rejects or []).most_common():
        table.add([reason, cell(n)])
    return table


def _summary_warnings(summary: dict[str, Any] | None) -> list[str]:
    found: list[str] = []
    blocks = [summary or {}, (summary or {}).get("confounding") or {}]
    for block, key in ((b, k) for b in blocks for k in ("warnings", "warning", "shortcut_warnings")):
        value = block.get(key)
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, list):
            found.extend(str(v.get("message", v)) if isinstance(v, dict) else str(v) for v in value)
    return found


def factors_table(summary: dict[str, Any] | None) -> Table:
    """How well each metadata factor alone predicts the label (ingest's confounding check)."""
    confounding = (summary or {}).get("confounding") or {}
    table = Table(["factor", "scope", "n", "accuracy from the factor alone", "chance", "lift"],
                  caption="What predicts the label without looking at a pixel", collapsed=False,
                  numeric=[False, False, True, True, True, True])
    threshold = confounding.get("warning_lift")
    for f in confounding.get("factors") or []:
        if not isinstance(f, dict):
            continue
        lift = f.get("lift")
        css = "worst" if isinstance(lift, (int, float)) and isinstance(threshold, (int, float)) and lift >= threshold \
            else ""
        table.add([cell(f.get("factor")), cell(f.get("scope")), cell(f.get("n")), rate_cell(f.get("accuracy")),
                   rate_cell(f.get("chance")), num_cell(lift, digits=2, css=css)])
    if threshold is not None:
        table.note = (f"Accuracy of predicting the label from the factor alone (majority label per value) vs always "
                      f"predicting the majority label; lift >= {threshold} is highlighted and warned about by ingest.")
    return table


def build_cohort(inputs: ReportInputs, out: Path) -> dict[str, Any]:
    frame = inputs.cohort
    if frame is None or not len(frame):
        reason = "No ingest manifest was found, so the cohort cannot be described (pass --ingest DIR)."
        return {"available": False, "reason": reason}
    counts, series = counts_table(frame)
    sites = _site_order(frame)
    figures.grouped_bars(out / "fig_cohort_counts.png", groups=sites, series=series, ylabel="images", ylim=None,
                         width_in=max(7.5, 1.3 * len(sites) + 4))
    ages, samples = ages_table(frame)
    age_figure = None
    if any(samples.values()):
        figures.distributions(out / "fig_cohort_ages.png", samples=samples, ylabel="age (years)")
        age_figure = {"src": "fig_cohort_ages.png", "alt": "age per site", "caption": "Age distribution per site."}
    splits = Counter(frame["split"].astype(str))
    lines = [f"{len(frame):,} images from {len(sites)} sites after ingest ("
             + ", ".join(f"{n:,} {s}" for s, n in sorted(splits.items(), key=lambda kv: SPLIT_ORDER.get(kv[0], 3)))
             + "). Splits are patient-level; validation and test hospitals are held out whole."]
    rejects = rejects_table(inputs.rejects)
    return {
        "available": True,
        "lines": lines,
        "warnings": _summary_warnings(inputs.ingest_summary),
        "counts": counts,
        "counts_figure": {"src": "fig_cohort_counts.png", "alt": "images per site, position and label",
                          "caption": "Images per site by position and label: in the training sites position and "
                                     "label go together, at the test hospital the other way round."},
        "confounding": factors_table(inputs.ingest_summary),
        "ages": ages,
        "age_figure": age_figure,
        "rejects": rejects,
        "rejects_text": "No rejects file was found." if inputs.rejects is None else "No file was rejected.",
    }
