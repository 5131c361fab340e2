"""Section 1: the question and, per algorithm, a one-sentence answer with its numbers."""

from __future__ import annotations

from typing import Any

from pipeline.report.evaluation import rule_label
from pipeline.report.headline import headline
from pipeline.report.tables import MISSING, Cell, Table, cell, is_number, mean_std_text

QUESTION = ("Does the classifier look at the lungs, or at shortcuts such as the patient's position (standing or "
            "lying), the hospital, devices and text stamps?")

# Evidence that a model uses the shortcut (documented in docs/report.md): any one of these counts.
CONFLICT_GAP = 0.20      # conflicting images this much below the aligned ones
FLIP_RATE = 0.30         # a position swap alone changes this share of predictions
SHORTCUT_OVER_LUNGS = 1.0  # region ablation: shortcut regions' share above the lungs' share
LEARNT = 0.6             # below this training-site validation accuracy the model has not learnt the task


def _m(block: dict[str, Any]) -> Any:
    return (block or {}).get("mean")


def _pct(block: dict[str, Any]) -> str:
    return mean_std_text(block.get("mean"), block.get("std"), percent=True) if block else MISSING


def verdict(numbers: dict[str, Any], aligned: Any) -> tuple[str, str]:
    """("relies on the position shortcut" | ..., css) from the behavioural evidence, never from attribution alone."""
    reasons = []
    conflict = _m(numbers.get("conflict_accuracy"))
    if is_number(conflict) and is_number(aligned) and aligned - conflict >= CONFLICT_GAP:
        reasons.append("conflict")
    if is_number(_m(numbers.get("counterfactual_flip_rate"))) and _m(numbers["counterfactual_flip_rate"]) >= FLIP_RATE:
        reasons.append("flips")
    lungs, shortcuts = _m(numbers.get("region_ablation_lungs")), _m(numbers.get("region_ablation_shortcuts"))
    if is_number(lungs) and is_number(shortcuts) and shortcuts > SHORTCUT_OVER_LUNGS * lungs:
        reasons.append("ablation")
    measured = [x for x in (conflict, _m(numbers.get("counterfactual_flip_rate")), lungs) if is_number(x)]
    if numbers.get("constant_predictor"):
        runs = ", ".join(numbers["constant_predictor"])
        return f"is a constant predictor ({runs}: every prediction one class), so it reads nothing in the image", "bad"
    trained = _m(numbers.get("training_site_accuracy"))
    if is_number(trained) and trained < LEARNT:
        return (f"has not learnt the task ({100 * trained:.0f}% on the training hospitals' validation images), "
                "so where it looks means little"), ""
    if not measured:
        return "cannot be judged yet (no conflict, counterfactual or ablation measurement)", ""
    if reasons:
        return "relies on shortcuts rather than the lungs", "bad"
    return "mostly uses lung evidence", "good"


def _aligned(metrics: dict[str, Any], names: list[str]) -> Any:
    values = [((metrics.get("models") or {}).get(n, {}).get("mean_site") or {}).get("aligned_accuracy") for n in names]
    values = [v for v in values if is_number(v)]
    return sum(values) / len(values) if values else None


def sentence(algorithm: str, numbers: dict[str, Any], metrics: dict[str, Any]) -> tuple[str, str, str]:
    """(verdict, the numbers behind it as one sentence, css class)."""
    seeds = numbers.get("seeds") or []
    judged, css = verdict(numbers, _aligned(metrics, numbers.get("models") or []))
    parts = [f"Selected by {rule_label(numbers.get('selection_rule'))}, {len(seeds)} seed{'s' if len(seeds) != 1 else ''}"]
    if is_number(_m(numbers.get("training_site_accuracy"))):
        parts.append(f"{_pct(numbers['training_site_accuracy'])} on the training hospitals' validation images")
    if is_number(_m(numbers.get("test_site_accuracy"))):
        parts.append(f"{_pct(numbers['test_site_accuracy'])} at the test hospital")
    if is_number(_m(numbers.get("conflict_accuracy"))):
        parts.append(f"{_pct(numbers['conflict_accuracy'])} on its images whose position contradicts the label")
    if is_number(_m(numbers.get("counterfactual_flip_rate"))):
        parts.append(f"changing only the position flips {_pct(numbers['counterfactual_flip_rate'])} of predictions")
    lungs, shortcuts = numbers.get("region_ablation_lungs") or {}, numbers.get("region_ablation_shortcuts") or {}
    if is_number(_m(lungs)) and is_number(_m(shortcuts)):
        parts.append(f"region ablation puts {_pct(lungs)} of its decision on the lungs and {_pct(shortcuts)} on "
                     "shortcut regions")
    text = parts[0] + ": " + "; ".join(parts[1:]) + "." if len(parts) > 1 else parts[0] + "."
    return judged, text, css


HEADLINE_FIELDS = ("training_site_accuracy", "test_site_accuracy", "test_site_auroc", "conflict_accuracy",
                   "counterfactual_flip_rate", "region_ablation_lungs", "region_ablation_shortcuts",
                   "ig_lung_mass_fraction")


def _spread_cell(block: dict[str, Any], field: str, css: str, percent: bool = True) -> Cell:
    b = block.get(field) or {}
    return Cell(mean_std_text(b.get("mean"), b.get("std"), percent=percent),
                b.get("mean") if is_number(b.get("mean")) else None, css)


def headline_table(lines: dict[str, dict[str, Any]]) -> Table:
    table = Table(["algorithm", "selection rule", "seeds", "training sites (val)", "test site", "test AUROC",
                   "conflicting images", "flip rate", "lung share", "shortcut share", "IG lung mass"],
                  caption="Headline: mean ± std over seeds, test hospital unless stated",
                  numeric=[False, False, False] + [True] * 8)
    for algorithm, entry in lines.items():
        for rule, block in entry["by_rule"].items():
            css = "muted" if rule == "oracle" else ""

            table.add([Cell(algorithm, algorithm, css), Cell(rule_label(rule, short=True), rule, css, rule_label(rule)),
                       cell(", ".join(str(s) for s in block["seeds"]) or None),
                       *[_spread_cell(block, f, css, percent=f != "test_site_auroc") for f in HEADLINE_FIELDS]])
    table.note = ("Training sites: pooled validation accuracy of the training hospitals at the selected checkpoint. "
                  "Conflicting: test images whose position contradicts the label. Flip rate: counterfactual "
                  "position swaps. Lung/shortcut share: region ablation. Audit numbers exist for each run's "
                  "model.pt only, so other selection rules show a dash there.")
    return table


def build_summary(metrics: dict[str, Any] | None, audit: dict[str, Any] | None) -> dict[str, Any]:
    lines = headline(metrics, audit)
    answers = []
    for algorithm, numbers in lines.items():
        judged, text, css = sentence(algorithm, numbers, metrics or {})
        answers.append({"model": algorithm, "verdict": judged, "sentence": text, "css": css})
    notes = []
    if lines and any("oracle" in e["by_rule"] for e in lines.values()):
        notes.append("Rows selected by the oracle rule peek at the test hospital: an upper bound, never a result.")
    return {"question": QUESTION, "answers": answers, "headline": headline_table(lines) if lines else None,
            "notes": notes, "numbers": lines}
