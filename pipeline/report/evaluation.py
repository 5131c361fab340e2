"""Section 3: per-site out-of-distribution evaluation from ``metrics.json`` (docs/evaluate.md has its keys).

Every number is shown with the selection rule and split that produced it; the worst site of each model is
highlighted; the metadata-only baseline sits beside the models.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.report import figures
from pipeline.report.tables import MISSING, Cell, Table, cell, ci_cell, is_number, mean_std_text, num_cell, rate_cell

RULE_LABELS = {
    "training_domain": "training-domain validation",
    "leave_one_domain_out": "leave-one-domain-out",
    "ood_validation": "OOD validation hospital",
    "oracle": "oracle (test hospital: upper bound only)",
}


RULE_SHORT = {
    "training_domain": "training-domain val.",
    "leave_one_domain_out": "leave-one-domain-out",
    "ood_validation": "OOD val. hospital",
    "oracle": "oracle (upper bound)",
}


def rule_order(rule: Any) -> int:
    return list(RULE_LABELS).index(rule) if rule in RULE_LABELS else len(RULE_LABELS)


def rule_label(rule: Any, short: bool = False) -> str:
    """How a selection rule is written: in full in sentences, short in tables and legends."""
    labels = RULE_SHORT if short else RULE_LABELS
    return labels.get(str(rule), str(rule)) if rule else "unstated"


def models(metrics: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    entries = (metrics or {}).get("models") or {}
    return {str(k): v for k, v in entries.items() if isinstance(v, dict)}


def _protocol(entry: dict[str, Any], block: dict[str, Any] | None = None) -> str:
    block = block or {}
    rule = block.get("selection_rule") or entry.get("selection_rule")
    split = block.get("split") or entry.get("split")
    text = entry.get("protocol") or f"selection={rule}; split={split}"
    n = block.get("n")
    return f"{text}; n={n}" if n is not None else text


def site_table(metrics: dict[str, Any]) -> Table:
    """Every model x site; each model's worst site by accuracy is highlighted; the rule sits on every row."""
    table = Table(["model", "selection rule", "site", "n", "accuracy", "balanced acc.", "AUROC [95% CI]", "ECE",
                   "conflicting", "aligned", "last evals"],
                  caption="Per model and site (test split)",
                  numeric=[False, False, False, True, True, True, True, True, True, True, True])
    for name, entry in models(metrics).items():
        per_site = entry.get("per_site") or {}
        worst = ((entry.get("worst_site") or {}).get("accuracy") or {}).get("site")
        rule = str(entry.get("selection_rule"))
        upper = entry.get("upper_bound") or rule == "oracle"
        rule_css = "flag" if upper else "muted"
        history = (entry.get("history") or {}).get("test_acc") or {}
        swing = (f"{_pct(history.get('mean'))} ({100 * history['min']:.0f}–{100 * history['max']:.0f})"
                 if all(is_number(history.get(k)) for k in ("mean", "min", "max")) else MISSING)
        name_cell = Cell(name + (" (constant!)" if entry.get("constant_predictor") else ""), name,
                         "flag" if entry.get("constant_predictor") else "")
        for site, block in per_site.items():
            css = "worst" if site == worst and len(per_site) > 1 else ""
            tip = _protocol(entry, block)
            rule_text = rule_label(rule, short=True) + (" (upper bound)" if upper and rule != "oracle" else "")
            table.add([name_cell, Cell(rule_text, rule, rule_css, tip),
                       Cell(site, site, css), cell(block.get("n")), rate_cell(block.get("accuracy"), css=css, title=tip),
                       rate_cell(block.get("balanced_accuracy"), title=tip),
                       ci_cell(block.get("auroc"), block.get("auroc_ci"), title=tip),
                       num_cell(block.get("ece"), title=tip), rate_cell(block.get("conflict_accuracy"), title=tip),
                       rate_cell(block.get("aligned_accuracy"), title=tip),
                       Cell(swing, history.get("mean") if is_number(history.get("mean")) else None, "muted")])
    table.note = ("Conflicting = images whose position contradicts the label (the shortcut's worst group); aligned = "
                  "the others. Highlighted: a model's worst site. Last evals: the mean (min–max) test accuracy "
                  "over the run's last evaluations during training: single checkpoints swing under shortcut pressure. "
                  "A constant predictor (every prediction one class) is flagged: its accuracy is the class prior.")
    return table


def _pct(value: Any) -> str:
    return f"{100 * value:.1f}%" if is_number(value) else MISSING


def _agg_cell(agg: dict[str, Any], name: str, css: str, percent: bool = True) -> Cell:
    block = agg.get(name) or {}
    mean, std = block.get("mean"), block.get("std")
    return Cell(mean_std_text(mean, std, percent=percent), float(mean) if is_number(mean) else None, css)


def aggregate_table(metrics: dict[str, Any]) -> Table:
    """Every (algorithm, selection rule) over its seeds: mean ± std, with the rule written out."""
    table = Table(["algorithm", "selection rule", "runs", "seeds", "mean-site accuracy", "conflicting images",
                   "mean-site AUROC", "test acc. (last evals)"],
                  caption="Every selection rule, averaged over seeds (mean ± std)",
                  numeric=[False, False, True, False, True, True, True, True])
    for key, agg in ((metrics or {}).get("aggregates") or {}).items():
        rule = agg.get("selection_rule")
        css = "muted" if rule == "oracle" else ""

        table.add([agg.get("algorithm", key), Cell(rule_label(rule, short=True), str(rule), css, rule_label(rule)),
                   cell(agg.get("n_runs")),
                   ", ".join(str(s) for s in agg.get("seeds") or []) or MISSING,
                   _agg_cell(agg, "mean_site_accuracy", css), _agg_cell(agg, "mean_site_conflict_accuracy", css),
                   _agg_cell(agg, "mean_site_auroc", css, percent=False), _agg_cell(agg, "history_test_acc", css)])
    table.note = ("Training-domain validation is the default, honest rule; OOD validation uses a labelled hospital "
                  "that is neither trained on nor tested; oracle peeks at the test hospital and is an upper bound only.")
    return table


def baseline_table(metrics: dict[str, Any]) -> Table:
    base = (metrics or {}).get("metadata_baseline") or {}
    table = Table(["site", "n", "accuracy", "AUROC [95% CI]", "conflicting"],
                  caption="Metadata-only baseline (site, view, position, age group, sex; no pixels)",
                  numeric=[False, True, True, True, True])
    for site, block in (base.get("per_site") or {}).items():
        table.add([site, cell(block.get("n")), rate_cell(block.get("accuracy")),
                   ci_cell(block.get("auroc"), block.get("auroc_ci")), rate_cell(block.get("conflict_accuracy"))])
    if base:
        table.note = (f"Fitted on the {base.get('fitted_on', 'training data')} (n={base.get('n_train', '?')}); "
                      "a model that barely beats it has little lung evidence to show.")
    return table


def group_table(metrics: dict[str, Any]) -> Table:
    table = Table(["model", "selection rule", "site | position", "n", "accuracy", "AUROC"],
                  caption="Per site and position", numeric=[False, False, False, True, True, True], collapsed=True)
    for name, entry in models(metrics).items():
        for group, block in (entry.get("per_group") or {}).items():
            tip = _protocol(entry, block)
            table.add([name, Cell(str(entry.get("selection_rule")), None, "muted"), group, cell(block.get("n")),
                       rate_cell(block.get("accuracy"), title=tip), num_cell(block.get("auroc"), title=tip)])
    return table


def _headline_figure(metrics: dict[str, Any], out: Path) -> dict[str, Any] | None:
    """Training sites (validation), each test site, and each test site's conflicting images, per algorithm x rule."""
    from pipeline.report.headline import spread, val_at_step

    entries = models(metrics)
    sites = list(metrics.get("sites") or sorted({s for e in entries.values() for s in (e.get("per_site") or {})}))
    if not entries or not sites:
        return None
    by_group: dict[str, list[dict[str, Any]]] = {}
    ordered = sorted(entries.values(), key=lambda e: (str(e.get("algorithm")), rule_order(e.get("selection_rule"))))
    for entry in ordered:
        key = f"{entry.get('algorithm')} ({rule_label(entry.get('selection_rule'), short=True)})"
        by_group.setdefault(key, []).append(entry)
    groups = ["training sites\n(validation)"] + [f"{s}\n(all)" for s in sites] + [f"{s}\n(conflicting)" for s in sites]
    series, intervals = {}, {}
    for key, members in by_group.items():
        columns = [[val_at_step(m) for m in members]]
        columns += [[((m.get("per_site") or {}).get(s) or {}).get("accuracy") for m in members] for s in sites]
        columns += [[((m.get("per_site") or {}).get(s) or {}).get("conflict_accuracy") for m in members] for s in sites]
        stats = [spread(c) for c in columns]
        series[key] = [st["mean"] for st in stats]
        intervals[key] = [(st["mean"] - st["std"], st["mean"] + st["std"]) if st["std"] is not None else None
                          for st in stats]
    base = (metrics.get("metadata_baseline") or {}).get("per_site") or {}
    reference = {"metadata-only baseline": [None] + [(base.get(s) or {}).get("accuracy") for s in sites]
                 + [(base.get(s) or {}).get("conflict_accuracy") for s in sites]} if base else None
    figures.grouped_bars(out / "fig_accuracy_per_site.png", groups=groups, series=series, intervals=intervals,
                         ylabel="accuracy", reference=reference, chance=0.5,
                         width_in=max(8.0, 1.6 * len(groups) + 4.5))
    return {"src": "fig_accuracy_per_site.png", "alt": "accuracy per site per model",
            "caption": "Accuracy on the training hospitals' validation images (pooled, at the selected checkpoint), at each test hospital, and on its "
                       "images whose position contradicts the label; mean over seeds, whiskers ± 1 std; dashed: "
                       "metadata-only baseline; dotted: chance."}


def build_evaluation(metrics: dict[str, Any] | None, out: Path) -> dict[str, Any]:
    if not metrics or not models(metrics):
        return {"available": False,
                "reason": "No evaluation results (metrics.json) were found: run `cxr-fishr evaluate`."}
    split = metrics.get("split", "test")
    lines = [f"Measured on the {split} split ({', '.join(metrics.get('sites') or []) or 'sites as listed'}). "
             f"Thresholded metrics use the threshold chosen on the training domains' validation split; AUROC has a "
             f"{metrics.get('n_bootstrap', 1000)}-draw bootstrap 95% interval. Hover a number for its protocol."]
    return {
        "available": True,
        "lines": lines,
        "figure": _headline_figure(metrics, out),
        "conflict_figure": None,
        "tables": [site_table(metrics)],
        "selection": aggregate_table(metrics),
        "baseline": baseline_table(metrics),
        "groups": group_table(metrics),
    }
