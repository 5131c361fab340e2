"""Section 1: the question and, per algorithm, a one-sentence answer with its numbers (the verdict's rules and
thresholds are in pipeline/report/verdict.py)."""

from __future__ import annotations

from typing import Any

from pipeline.artefacts.audit import AuditFile
from pipeline.artefacts.metrics import MetricsFile
from pipeline.protocol.selection import ORACLE, is_upper_bound
from pipeline.report.baselines import threshold_text
from pipeline.report.headline import headline, lung_masks, lungs_estimated
from pipeline.report.site_metrics import conflict_words, rule_label
from pipeline.report.tables import Cell, Table, is_number, mark_estimated, mean_std_text, not_measured
from pipeline.report.verdict import (  # noqa: F401  (re-exported: summary.verdict is the documented entry)
    CONFLICT_GAP,
    FLIP_RATE,
    LEARNT,
    LUNG_SHARE,
    SHORTCUT_OVER_LUNGS,
    verdict,
)

QUESTION = ("Does the classifier look at the lungs, or at shortcuts such as the patient's position (standing or "
            "lying), the hospital, devices and text stamps?")


def _m(block: dict[str, Any]) -> Any:
    return (block or {}).get("mean")


def _pct(block: dict[str, Any]) -> str:
    return mean_std_text((block or {}).get("mean"), (block or {}).get("std"), percent=True)


def _aligned(metrics: MetricsFile | None, names: list[str]) -> float | None:
    """Mean over the runs ``names`` of their mean-site accuracy on aligned images (None when none measured it)."""
    scored = metrics.models if metrics is not None else {}
    values = [scored[n].mean_site.aligned_accuracy for n in names if n in scored]
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def _thresholds(numbers: dict[str, Any]) -> str:
    values = sorted({round(v, 2) for v in numbers.get("thresholds") or [] if is_number(v)})
    if not values:
        return "threshold not recorded"
    shown = threshold_text(values[0], numbers.get("threshold_source")) if len(values) == 1 else \
        f"thresholds {', '.join(f'{v:.2f}' for v in values)} from {numbers.get('threshold_source') or 'an unstated source'}"
    return shown


def _accuracy_part(numbers: dict[str, Any], n_sites: int = 1) -> str | None:
    block = numbers.get("test_site_accuracy")
    if not is_number(_m(block)):
        return None
    majority = _m(numbers.get("test_site_majority_accuracy"))
    base = f"always-majority {100 * majority:.1f}%" if is_number(majority) else \
        f"always-majority {not_measured('no class counts in metrics.json')}"
    where = "at the test hospital" if n_sites <= 1 else f"at the {n_sites} test hospitals (mean over sites)"
    return f"{_pct(block)} {where} ({base}; {_thresholds(numbers)})"


def seed_count(numbers: dict[str, Any]) -> tuple[int, int]:
    """(distinct seeds, runs) behind one headline row: the summary sentence and the seeds column both use it."""
    return len(numbers.get("seeds") or []), len(numbers.get("models") or [])


def seed_words(numbers: dict[str, Any]) -> str:
    """"1 seed", "3 seeds", "2 runs (1 seed)" when runs share a seed, "seed not recorded"."""
    seeds, runs = seed_count(numbers)
    if not seeds:
        return f"{runs} run{'s' if runs != 1 else ''}, seed not recorded"
    text = f"{seeds} seed{'s' if seeds != 1 else ''}"
    return f"{runs} runs ({text})" if runs > seeds else text


def sentence(algorithm: str, numbers: dict[str, Any], metrics: MetricsFile | None,
             audit: AuditFile | None = None) -> tuple[str, str, str]:
    """(verdict, the numbers behind it as one sentence, css class) for one algorithm's headline ``numbers``."""
    judged, css = verdict(numbers, _aligned(metrics, numbers.get("models") or []),
                          lung_masks=lung_masks(audit), reasons=numbers.get("not_measured") or {})
    rule = rule_label(numbers.get("selection_rule"))
    picked = f"No checkpoint selected by {rule}" if numbers.get("no_checkpoint") else f"Selected by {rule}"
    parts = [f"{picked}, {seed_words(numbers)}"]
    if is_number(_m(numbers.get("training_site_accuracy"))):
        parts.append(f"{_pct(numbers['training_site_accuracy'])} on the training hospitals' validation images "
                     "at the selected checkpoint")
    elif numbers.get("evaluated"):
        why = (numbers.get("not_measured") or {}).get("training_site_accuracy")
        parts.append(f"the training hospitals' validation accuracy is {not_measured(why)}")
    parts.append(_accuracy_part(numbers, len(metrics.sites) if metrics is not None else 0))
    if not numbers.get("evaluated"):
        parts.append("no evaluate result, so no accuracy is measured")
        parts.append(audited_part(numbers.get("models") or [], audit))
    if is_number(_m(numbers.get("conflict_accuracy"))):
        attribute = numbers.get("conflict_attribute") or conflict_words(metrics)
        n = numbers.get("n_conflict")
        count = f"{int(n)} " if is_number(n) else ""
        parts.append(f"{_pct(numbers['conflict_accuracy'])} on its {count}images whose {attribute} contradicts the "
                     "label" + (f" (vs {int(numbers['n_aligned'])} aligned)" if is_number(numbers.get("n_aligned"))
                                else ""))
    if is_number(_m(numbers.get("counterfactual_flip_rate"))):
        parts.append(f"changing only the position flips {_pct(numbers['counterfactual_flip_rate'])} of predictions")
    lungs, shortcuts = numbers.get("region_ablation_lungs") or {}, numbers.get("region_ablation_shortcuts") or {}
    if is_number(_m(lungs)):
        estimated = " (estimated: lung masks ESTIMATED)" if lungs_estimated(audit) else ""
        text = f"region ablation puts {_pct(lungs)}{estimated} of its decision on the lungs"
        if is_number(_m(shortcuts)):
            text += f" and {_pct(shortcuts)} on shortcut regions"
        else:
            why = (numbers.get("not_measured") or {}).get("region_ablation_shortcuts")
            text += f"; its share on shortcut regions is {not_measured(why)}"
        parts.append(text)
    parts = [p for p in parts if p]
    text = parts[0] + ": " + "; ".join(parts[1:]) + "." if len(parts) > 1 else parts[0] + "."
    return judged, text, css


def audited_part(names: list[str], audit: AuditFile | None) -> str | None:
    """What the audit measured for these runs (an audit-only report still says what exists)."""
    from pipeline.report.shortcut_audit import method_label

    if audit is None:
        return None
    entries = [audit.models[n] for n in names if n in audit.models]
    methods = list(dict.fromkeys(m for e in entries for m in e.methods))
    measured = []
    if methods:
        measured.append("attribution maps (" + ", ".join(method_label(m) for m in methods) + ")")
    if entries:
        measured.append(f"interventions on {max(e.interventions.overall.n for e in entries)} images")
    if any(e.probe_balanced_accuracy for e in entries):
        measured.append("probes of the representation")
    if not measured:
        return None
    return f"the audit measured {', '.join(measured)} on the {audit.split} split (Section 4)"


HEADLINE_FIELDS = ("training_site_accuracy", "test_site_accuracy", "test_site_majority_accuracy", "test_site_auroc",
                   "conflict_accuracy", "counterfactual_flip_rate", "region_ablation_lungs",
                   "region_ablation_shortcuts", "ig_lung_mass_fraction")


LUNG_FIELDS = ("region_ablation_lungs", "ig_lung_mass_fraction")


def _spread_cell(block: dict[str, Any], field: str, css: str, percent: bool = True,
                 estimated: bool = False) -> Cell:
    b = block.get(field) or {}
    reason = (block.get("not_measured") or {}).get(field)
    mean = float(b["mean"]) if is_number(b.get("mean")) else None
    shown = Cell(mean_std_text(b.get("mean"), b.get("std"), percent=percent, reason=reason), mean,
                 css if mean is not None else f"{css or 'muted'} nm")
    return mark_estimated(shown, estimated and field in LUNG_FIELDS)


def _seeds_cell(block: dict[str, Any]) -> Cell:
    """The number of seeds (as the summary sentence counts them), the seed values in the tooltip."""
    seeds, runs = seed_count(block)
    listed = ", ".join(str(s) for s in block.get("seeds") or [])
    title = f"seeds {listed}; runs {', '.join(block.get('models') or [])}" if listed else "no seed recorded"
    if not seeds:
        return Cell(not_measured("no seed recorded"), None, "muted nm", title)
    return Cell(str(seeds) if runs <= seeds else f"{seeds} ({runs} runs)", seeds, "", title)


def headline_table(lines: dict[str, dict[str, Any]], *, estimated: bool = False,
                   attribute: str = "position", split: str = "test", audit_split: str | None = None) -> Table:
    """One row per algorithm and selection rule; every caption says what its value is (split, step, source)."""
    where = "test" if split == "test" else f"{split} split"
    table = Table(["algorithm", "selection rule", "seeds", "training sites (val)", f"{where} site",
                   f"always-majority ({where})", f"{where} AUROC", "conflicting images", "flip rate", "lung share",
                   "shortcut share", "IG lung mass"],
                  caption="Headline: mean ± std over seeds (no std for 1 seed), "
                          + ("test hospital" if split == "test" else f"the {split} split") + " unless stated",
                  numeric=[False, False, False] + [True] * 9)
    for algorithm, entry in lines.items():
        for rule, block in entry["by_rule"].items():
            css = "muted" if is_upper_bound(rule) else ""
            name = algorithm + (" (constant!)" if block.get("constant_predictor") else "")
            table.add([Cell(name, algorithm, "flag" if block.get("constant_predictor") else css,
                            "; ".join(block.get("constant_where") or [])),
                       Cell(rule_label(rule, short=True), rule, css, rule_label(rule)),
                       _seeds_cell(block),
                       *[_spread_cell(block, f, css, percent=f != "test_site_auroc", estimated=estimated)
                         for f in HEADLINE_FIELDS]])
    audited = "" if audit_split in (None, split) else f" (audit's {audit_split} split)"
    table.note = ("Seeds: distinct training seeds averaged (runs when several share one). Training sites: pooled "
                  "validation accuracy of the training hospitals at the selected checkpoint; not measured when no "
                  f"checkpoint was selected. {where.capitalize()} site: evaluate's thresholded accuracy, mean over "
                  f"the {split} sites; always-majority: the accuracy of always predicting each site's majority "
                  f"class (a model at or below it shows no skill). (constant!): every scored {split} prediction "
                  f"is one class at evaluate's threshold. Conflicting: {split} images whose {attribute} "
                  f"contradicts the label. Flip rate{audited}: counterfactual position swaps. Lung/shortcut "
                  f"share{audited}: region ablation."
                  + (" (estimated): rests on ESTIMATED lung masks." if estimated else ""))
    return table


def oracle_notes(lines: dict[str, dict[str, Any]]) -> list[str]:
    """A note wherever an oracle row reads lower than the algorithm's headline row, with the reason it can."""
    notes = []
    for algorithm, entry in lines.items():
        oracle, headline_rule = entry["by_rule"].get(ORACLE.name), entry.get("selection_rule")
        ours, upper = _m(entry.get("test_site_accuracy")), _m((oracle or {}).get("test_site_accuracy"))
        if oracle is None or is_upper_bound(headline_rule) or not (is_number(ours) and is_number(upper)):
            continue
        if upper < ours:
            notes.append(
                f"{algorithm}: the oracle row ({100 * upper:.1f}%) reads lower than the headline row "
                f"({100 * ours:.1f}%). The oracle checkpoint was picked by the test accuracy logged during training "
                "(at the evaluation steps only, predicting by the argmax of the logits); here every "
                "checkpoint is re-scored on all test images with the threshold chosen on the training hospitals' "
                "validation images, so the pick need not be the best under this scoring.")
    return notes


def build_summary(metrics: MetricsFile | None, audit: AuditFile | None) -> dict[str, Any]:
    """Section 1 of the page: the question, one answer per algorithm, the headline table and its notes
    (``metrics``, ``audit``: evaluate's MetricsFile and audit's AuditFile; None: that stage's output is absent)."""
    lines = headline(metrics, audit)
    answers = []
    for algorithm, numbers in lines.items():
        judged, text, css = sentence(algorithm, numbers, metrics, audit)
        answers.append({"model": algorithm, "verdict": judged, "sentence": text, "css": css})
    notes = []
    if lines and not (metrics is not None and metrics.models):
        notes.append("No evaluate results (metrics.json) were given: these lines rest on the audit alone, so no "
                     "accuracy is measured.")
    if lines and any(ORACLE.name in e["by_rule"] for e in lines.values()):
        notes.append("Rows selected by the oracle rule peek at the test hospital: an upper bound, never a result.")
    notes.extend(oracle_notes(lines))
    table = headline_table(lines, estimated=lungs_estimated(audit), attribute=conflict_words(metrics),
                           split=metrics.split if metrics is not None else "test",
                           audit_split=audit.split if audit is not None else None) if lines else None
    return {"question": QUESTION, "answers": answers, "headline": table,
            "notes": notes, "numbers": lines}
