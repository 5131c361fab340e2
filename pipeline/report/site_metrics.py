"""Section 3: per-site out-of-distribution evaluation from evaluate's ``metrics.json``
(:class:`~pipeline.artefacts.metrics.MetricsFile`; docs/evaluate.md has its keys).

Every number is shown with the selection rule and split that produced it; the worst site of each model is
highlighted; the metadata-only baseline sits beside the models.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pipeline.artefacts.metrics import Aggregate, GroupScores, MetricsFile, ModelEntry
from pipeline.artefacts.seeds import SeedSpread
from pipeline.protocol.labels import class_counts_text
from pipeline.protocol.selection import is_upper_bound, rule_label, rule_order
from pipeline.report import figures
from pipeline.report.baselines import (
    beats_majority,
    class_counts,
    constant_predictor,
    fields,
    half_width,
    majority_accuracy,
    threshold_text,
)
from pipeline.report.tables import (
    Cell,
    Table,
    cell,
    ci_cell,
    is_number,
    mean_std_text,
    not_measured,
    num_cell,
    rate_cell,
    reason_of,
)


def conflict_words(metrics: MetricsFile | None) -> str:
    """The attribute evaluate split conflicting/aligned images by (``conflict_attribute`` of its sites; several
    joined by "/"); "position" when no site names one."""
    found = {b.conflict_attribute for e in (metrics.models.values() if metrics else [])
             for b in e.per_site.values() if b.conflict_attribute}
    return "/".join(sorted(found)) or "position"


def _protocol(entry: ModelEntry, block: GroupScores) -> str:
    """A number's protocol for its tooltip: evaluate's ``protocol`` (rule, split, threshold source) and the n."""
    return f"{entry.protocol}; n={block.n}"


def n_cell(block: GroupScores | dict[str, Any]) -> Cell:
    """``120 (48 COVID-19 / 72 no finding)``: a sample's size with its classes (small samples are visible)."""
    block = fields(block)
    n = block.get("n")
    pos, neg = class_counts(block)
    if not is_number(n):
        return cell(None, reason=reason_of(block, "n"))
    text = f"{int(n):,}" + (f" ({class_counts_text(pos, neg)})" if pos is not None else "")
    return Cell(text, float(n))


def accuracy_cell(block: GroupScores | dict[str, Any], *, key: str = "accuracy", css: str = "",
                  title: str = "") -> Cell:
    """An accuracy flagged when the predictions are all one class or it does not beat the always-majority rate
    (``block``: evaluate's scores of a group, or an audit block with the same names)."""
    block = fields(block)
    value = block.get(key)
    base = rate_cell(value, css=css, title=title, reason=reason_of(block, key))
    if not is_number(value):
        return base
    if key == "accuracy" and constant_predictor(block):
        return Cell(f"{base.text} (constant predictor)", base.sort, "flag", title)
    if key == "accuracy" and beats_majority(value, majority_accuracy(block)) is False:
        return Cell(f"{base.text} (≤ majority)", base.sort, "flag", title)
    return base


def majority_cell(block: GroupScores | dict[str, Any]) -> Cell:
    return rate_cell(majority_accuracy(block), css="muted", reason="no class counts in metrics.json")


def _threshold_cell(entry: ModelEntry, block: GroupScores) -> Cell:
    return Cell(f"{block.threshold:.2f}", block.threshold, "muted", entry.threshold_source)


def site_table(metrics: MetricsFile) -> Table:
    """Every model x site; each model's worst site by accuracy is highlighted; the rule sits on every row."""
    table = Table(["model", "selection rule", "site", "n (classes)", "threshold", "accuracy", "always-majority",
                   "balanced acc.", "AUROC [95% CI]", "ECE", "conflicting", "aligned", "training-time test acc."],
                  caption=f"Per model and site ({metrics.split} split)",
                  numeric=[False, False, False] + [True] * 10)
    for name, entry in metrics.models.items():
        per_site = entry.per_site
        worst = entry.worst_site.accuracy.site
        rule = entry.selection_rule
        upper = entry.upper_bound or is_upper_bound(rule)
        rule_css = "flag" if upper else "muted"
        history = entry.history.test_acc if entry.history else None
        swing = (Cell(f"{_pct(history.mean)} ({100 * history.min:.0f}–{100 * history.max:.0f})", history.mean,
                      "muted") if history else Cell(not_measured("the run logged no test accuracy"), None, "muted"))
        constant = entry.constant_on_split  # the scored predictions, not train's selection check
        name_cell = Cell(name + (" (constant!)" if constant else ""), name, "flag" if constant else "")
        for site, block in per_site.items():
            css = "worst" if site == worst and len(per_site) > 1 else ""
            tip = _protocol(entry, block)
            rule_text = rule_label(rule, short=True) + (" (upper bound)" if upper and not is_upper_bound(rule) else "")
            table.add([name_cell, Cell(rule_text, rule, rule_css, tip), Cell(site, site, css), n_cell(block),
                       _threshold_cell(entry, block), accuracy_cell(block, css=css, title=tip), majority_cell(block),
                       rate_cell(block.balanced_accuracy, title=tip, reason=reason_of(block, "balanced_accuracy")),
                       ci_cell(block.auroc, block.auroc_ci, title=tip,
                               reason=reason_of(block, "auroc") or _one_class(block)),
                       num_cell(block.ece, title=tip, reason=reason_of(block, "ece")),
                       rate_cell(block.conflict_accuracy, title=tip,
                                 reason=reason_of(block, "conflict_accuracy") or _empty(block.n_conflict)),
                       rate_cell(block.aligned_accuracy, title=tip,
                                 reason=reason_of(block, "aligned_accuracy") or _empty(block.n_aligned)),
                       swing])
    table.note = ("Accuracy: evaluate's, at the threshold shown (hover it for where it was chosen); always-majority: "
                  "the accuracy of always predicting the site's majority class, the trivial baseline every accuracy "
                  f"must beat (flagged when it does not). Conflicting = images whose {conflict_words(metrics)} "
                  "contradicts the label; "
                  "aligned = the others. Highlighted: a model's worst site. Training-time test acc.: the mean "
                  "(min–max) test accuracy the run logged over its last evaluations (other checkpoints, argmax of "
                  "the logits): single checkpoints swing under shortcut pressure. A constant predictor (every "
                  "prediction one class) is flagged: its accuracy is the class prior.")
    return table


def _one_class(block: GroupScores) -> str | None:
    return "one class only: AUROC undefined" if block.n_pos == 0 or block.n_neg == 0 else None


def _empty(n: int | None) -> str | None:
    """Why a group's accuracy is missing when the group has no image."""
    return "no such image here" if n == 0 else None


def _pct(value: Any) -> str:
    return f"{100 * value:.1f}%" if is_number(value) else not_measured(value=value)


def _agg_cell(agg: Aggregate, name: str, css: str, percent: bool = True) -> Cell:
    block = getattr(agg, name)
    if block is None:
        return cell(None, css=css, reason=reason_of(agg, name))
    # one run: no spread; the stage's reason ("1 run (n=1): no spread") in the tooltip, never a "± 0.0"
    return Cell(mean_std_text(block.mean, block.std, percent=percent), block.mean, css,
                reason_of(block, "std") or "")


def _seeds_cell(seeds: list[Any]) -> Cell:
    """The number of distinct seeds (a count, as the summary says "1 seed"); the seed values in the tooltip."""
    distinct = sorted({str(s) for s in seeds if s is not None})
    if not distinct:
        return cell(None, reason="no seed recorded")
    return Cell(str(len(distinct)), len(distinct), "", f"seed values: {', '.join(distinct)}")


def aggregate_table(metrics: MetricsFile) -> Table:
    """Every (algorithm, selection rule) over its seeds: mean ± std, with the rule written out."""
    table = Table(["algorithm", "selection rule", "runs", "seeds", "mean-site accuracy", "conflicting images",
                   "mean-site AUROC", "training-time test acc. (last evals)"],
                  caption="Every selection rule, averaged over seeds (mean ± std)",
                  numeric=[False, False, True, False, True, True, True, True])
    for agg in metrics.aggregates.values():
        rule = agg.selection_rule
        css = "muted" if is_upper_bound(rule) else ""
        table.add([agg.algorithm, Cell(rule_label(rule, short=True), rule, css, rule_label(rule)), cell(agg.n_runs),
                   _seeds_cell(agg.seeds),
                   _agg_cell(agg, "mean_site_accuracy", css), _agg_cell(agg, "mean_site_conflict_accuracy", css),
                   _agg_cell(agg, "mean_site_auroc", css, percent=False), _agg_cell(agg, "history_test_acc", css)])
    from pipeline.report.headline import site_majority

    majorities = [m for m in (site_majority(e) for e in metrics.models.values()) if m is not None]
    majority = (f"Always predicting each test site's majority class scores {100 * majorities[0]:.1f}% (mean over "
                "sites): the accuracy a model must beat. " if majorities else "")
    table.note = (majority + "Training-domain validation is the default, honest rule; OOD validation uses a labelled "
                  "hospital that is neither trained on nor tested; oracle peeks at the test hospital and is an upper "
                  "bound only.")
    return table


def baseline_table(metrics: MetricsFile) -> Table:
    base = metrics.metadata_baseline
    table = Table(["site", "n (classes)", "accuracy", "always-majority", "AUROC [95% CI]", "conflicting"],
                  caption=f"Metadata-only baseline ({', '.join(base.features) or 'features unrecorded'}; no pixels)",
                  numeric=[False, True, True, True, True, True])
    for site, block in base.per_site.items():
        table.add([site, n_cell(block), accuracy_cell(block), majority_cell(block),
                   ci_cell(block.auroc, block.auroc_ci, reason=reason_of(block, "auroc") or _one_class(block)),
                   rate_cell(block.conflict_accuracy, reason=reason_of(block, "conflict_accuracy"))])
    table.note = (f"Fitted on the {base.fitted_on} (n={base.n_train}); it shows how far the label can be predicted "
                  "without a pixel.")
    return table


def group_table(metrics: MetricsFile) -> Table:
    table = Table(["model", "selection rule", "site | position", "n (classes)", "accuracy", "always-majority",
                   "AUROC"], caption="Per site and position", numeric=[False, False, False, True, True, True, True],
                  collapsed=True)
    for name, entry in metrics.models.items():
        for group, block in entry.per_group.items():
            tip = _protocol(entry, block)
            table.add([name, Cell(entry.selection_rule, None, "muted"), group, n_cell(block),
                       accuracy_cell(block, title=tip), majority_cell(block),
                       num_cell(block.auroc, title=tip, reason=reason_of(block, "auroc") or _one_class(block))])
    return table


def shortcut_table(metrics: MetricsFile) -> Table:
    """Per shortcut attribute evaluate analysed: accuracy on the images where it contradicts / agrees with the
    label, with how many images had the attribute unknown (they are in neither group)."""
    table = Table(["model", "site", "attribute", "conflicting", "n conflicting", "aligned", "n aligned",
                   "unknown"], caption="Accuracy by shortcut attribute (conflicting vs aligned images)",
                  numeric=[False, False, False, True, True, True, True, True])
    for name, entry in metrics.models.items():
        for site, block in entry.per_site.items():
            for attribute, sub in block.shortcuts.items():
                table.add([name, site, attribute,
                           rate_cell(sub.conflict_accuracy, reason=reason_of(sub, "conflict_accuracy")
                                     or _empty(sub.n_conflict)),
                           cell(sub.n_conflict),
                           rate_cell(sub.aligned_accuracy, reason=reason_of(sub, "aligned_accuracy")
                                     or _empty(sub.n_aligned)),
                           cell(sub.n_aligned), cell(sub.n_unknown)])
    table.note = "Unknown: images whose attribute is unknown; they are counted here and left out of both groups."
    return table


def _label_majority(rows: Any) -> float | None:
    """Always-majority accuracy over the labelled rows (None when none is labelled)."""
    from pipeline.report.cohort import label_text

    labels = label_text(rows)
    known = labels[labels != "unknown"]
    if not len(known):
        return None
    positives = int((known == "1").sum())
    return max(positives, len(known) - positives) / len(known)


def _conflicting(frame: Any) -> Any:
    """Labelled rows whose position contradicts the label (COVID and erect, or no finding and supine)."""
    from pipeline.report.cohort import label_text

    position, label = frame["position"].astype(str), label_text(frame)
    return frame[((position == "erect") & (label == "1")) | ((position == "supine") & (label == "0"))]


def majority_line(metrics: MetricsFile, sites: list[str], cohort: Any) -> list[float | None]:
    """The always-majority accuracy of each group the headline figure shows: the training hospitals' validation
    images, each test site, and each test site's conflicting images (from the manifest; None where unknown)."""
    per_site = {}
    for site in sites:
        values = [majority_accuracy(e.per_site.get(site)) for e in metrics.models.values()]
        per_site[site] = next((v for v in values if v is not None), None)
    if cohort is None or not len(cohort) or not {"split", "label", "site"} <= set(cohort.columns):
        return [None] + [per_site[s] for s in sites] + [None] * len(sites)
    split = metrics.split
    val = _label_majority(cohort[cohort["split"].astype(str) == "val"])
    conflicting = []
    for site in sites:
        rows = cohort[(cohort["site"].astype(str) == site) & (cohort["split"].astype(str) == split)]
        if per_site[site] is None:
            per_site[site] = _label_majority(rows)
        # the manifest's split by position matches evaluate's only when evaluate split by position too
        by_position = conflict_words(metrics) == "position" and "position" in rows
        conflicting.append(_label_majority(_conflicting(rows)) if by_position else None)
    return [val] + [per_site[s] for s in sites] + conflicting


def _figure_series(entries: dict[str, ModelEntry], sites: list[str]
                   ) -> tuple[dict[str, list[Any]], dict[str, list[Any]]]:
    """(``{"<algorithm> (<rule>)": [mean per chart group]}``, the same with (mean - std, mean + std) whiskers, None
    for one seed): the groups are the training sites' validation accuracy, each site's accuracy, each site's
    conflicting-image accuracy, each over the seeds of one algorithm and rule."""
    from pipeline.report.headline import val_at_step

    by_group: dict[str, list[ModelEntry]] = {}
    for entry in sorted(entries.values(), key=lambda e: (e.algorithm, rule_order(e.selection_rule))):
        by_group.setdefault(f"{entry.algorithm} ({rule_label(entry.selection_rule, short=True)})", []).append(entry)
    series, intervals = {}, {}
    for key, members in by_group.items():
        columns = [[val_at_step(m) for m in members]]
        columns += [[m.per_site[s].accuracy if s in m.per_site else None for m in members] for s in sites]
        columns += [[m.per_site[s].conflict_accuracy if s in m.per_site else None for m in members] for s in sites]
        stats = [SeedSpread.from_values(c) for c in columns]
        series[key] = [st.mean for st in stats]
        intervals[key] = [(st.mean - st.sd, st.mean + st.sd) if st.mean is not None and st.sd is not None else None
                          for st in stats]
    return series, intervals


def _reference_caption(metrics: MetricsFile, groups: list[str], majority: list[Any],
                       reference: dict[str, list[Any]]) -> str:
    """"; dashed: metadata-only baseline; ...": each reference line named by the style figures drew it in (by
    its position in ``reference``), only when drawn; the groups without an always-majority value, with why."""
    shown = [f"{g.replace(chr(10), ' ')}: {_group_reason(metrics, g)}"
             for g, v in zip(groups, majority, strict=True) if not is_number(v)]
    words = {"metadata-only baseline": "metadata-only baseline",
             "always predict the majority class": "the accuracy of always predicting the majority class of the "
             "images in that group" + (f" (not measured for {'; '.join(shown)})" if shown else "")}
    lines = "".join(f"; {figures.REFERENCE_WORDS[k % len(figures.REFERENCE_WORDS)]}: {words[label]}"
                    for k, label in enumerate(reference))
    if "always predict the majority class" not in reference:
        lines += f"; always-majority line not measured ({'; '.join(shown)})"
    return lines


def _headline_figure(metrics: MetricsFile, out: Path, cohort: Any = None) -> dict[str, Any] | None:
    """Training sites (validation), each test site, and each test site's conflicting images, per algorithm x rule."""
    entries = metrics.models
    sites = list(metrics.sites or sorted({s for e in entries.values() for s in e.per_site}))
    if not entries or not sites:
        return None
    series, intervals = _figure_series(entries, sites)
    if not any(is_number(v) for values in series.values() for v in values):
        return None  # nothing measured: an empty chart would suggest otherwise
    groups = ["training sites\n(validation)"] + [f"{s}\n(all)" for s in sites] + [f"{s}\n(conflicting)" for s in sites]
    base = metrics.metadata_baseline.per_site
    reference: dict[str, list[Any]] = {}
    if base:
        reference["metadata-only baseline"] = ([None] + [base[s].accuracy if s in base else None for s in sites]
                                               + [base[s].conflict_accuracy if s in base else None for s in sites])
    majority = majority_line(metrics, sites, cohort)
    if any(is_number(v) for v in majority):
        reference["always predict the majority class"] = majority
    figures.grouped_bars(out / "fig_accuracy_per_site.png", groups=groups, series=series, intervals=intervals,
                         ylabel="accuracy", reference=reference or None,
                         width_in=max(8.0, 1.6 * len(groups) + 4.5))
    lines = _reference_caption(metrics, groups, majority, reference)
    return {"src": "fig_accuracy_per_site.png", "alt": "accuracy per site per model",
            "caption": "Accuracy on the training hospitals' validation images (pooled, at the selected checkpoint), "
                       f"at each test hospital, and on its images whose {conflict_words(metrics)} contradicts the "
                       f"label; mean over seeds, whiskers ± 1 std{lines}."}


def _group_reason(metrics: MetricsFile, group: str) -> str:
    """Why a chart group has no always-majority line: evaluate's reason for that site's conflicting images (the
    first model that recorded one), else the missing class counts."""
    site, _, kind = group.partition("\n")
    if kind == "(conflicting)":
        for entry in metrics.models.values():
            why = reason_of(entry.per_site.get(site), "conflict_accuracy")
            if why:
                return why
    return "no class counts in metrics.json"


def sample_size_warnings(metrics: MetricsFile, cohort: Any = None) -> list[str]:
    """Where a test site, or the validation set that chose the threshold and the checkpoint, is too small to
    separate the algorithms: the 95% interval of one accuracy is wider than the gap between them. An algorithm's
    accuracy is its mean over its runs (seeds), as the aggregate table averages them (SeedSpread's mean), never one
    seed's."""
    from pipeline.report.headline import val_at_step

    primary: dict[str, list[Any]] = {}  # algorithm -> its runs' primary entries (model.pt; "@" names other rules)
    for name, entry in metrics.models.items():
        if "@" not in name:
            primary.setdefault(entry.algorithm, []).append(entry)
    if len(primary) < 2:
        return []
    lines = []
    for site in metrics.sites:
        blocks = [e.per_site[site] for entries in primary.values() for e in entries if site in e.per_site]
        accs = _seed_means({a: [e.per_site[site].accuracy for e in entries if site in e.per_site]
                            for a, entries in primary.items()})
        n = next((b.n for b in blocks), None)
        lines += _gap_warning(f"{metrics.split} site {site}", accs, n)
    if cohort is not None and len(cohort) and "split" in cohort:
        n_val = int((cohort["split"].astype(str) == "val").sum())
        accs = _seed_means({a: [val_at_step(e) for e in entries] for a, entries in primary.items()})
        lines += _gap_warning("the training hospitals' validation set (it chose the threshold and the "
                              "training-domain checkpoint)", accs, n_val)
    return lines


def _seed_means(values: dict[str, list[float | None]]) -> dict[str, float]:
    """algorithm -> the mean of its runs' measured values (pipeline/artefacts/seeds.py SeedSpread, the aggregate
    table's estimator); an algorithm with none measured is left out."""
    from pipeline.artefacts.seeds import SeedSpread

    means = {a: SeedSpread.from_values(v).mean for a, v in values.items()}
    return {a: m for a, m in means.items() if m is not None}


def _gap_warning(what: str, accuracies: dict[str, float], n: Any) -> list[str]:
    if len(accuracies) < 2 or not is_number(n):
        return []
    best, worst = max(accuracies, key=accuracies.get), min(accuracies, key=accuracies.get)
    gap = accuracies[best] - accuracies[worst]
    width = half_width((accuracies[best] + accuracies[worst]) / 2, n)
    if width is None or 2 * width <= gap:
        return []
    return [f"{what}: n={int(n)} images, so an accuracy's 95% interval is about ±{100 * width:.0f} points, wider "
            f"than the {100 * gap:.1f}-point gap between {best} and {worst}: this sample cannot separate the models."]


_RANK = re.compile(r"test site (?P<site>.+?): (?P<body>.*)this site cannot rank the \d+ models")


def reword(warning: str, metrics: MetricsFile) -> str:
    """evaluate's warning as the page words it: "cannot rank" names the models compared (upper-bound rows are
    not compared, so the count differs from the rows listed), and a site of another split is not a "test site"."""
    match = _RANK.search(warning)
    if match:
        site = match.group("site")
        compared = [n for n, e in metrics.models.items() if not (e.upper_bound or is_upper_bound(e.selection_rule))
                    and site in e.per_site and e.per_site[site].auroc is not None]
        if compared:
            warning = warning.replace(match.group(0), f"test site {site}: {match.group('body')}this site cannot "
                                      f"rank the {len(compared)} models compared ({', '.join(compared)}; "
                                      "upper-bound rows are not compared)")
    split = metrics.split
    if split != "test":
        warning = warning.replace("test site ", f"{split} site ")
    return warning


def _thresholds_line(metrics: MetricsFile) -> str:
    """One threshold for all models, or each model's (each is chosen per checkpoint)."""
    texts = {n: threshold_text(e.threshold, e.threshold_source) for n, e in metrics.models.items()}
    if len(set(texts.values())) == 1:
        return next(iter(texts.values()))
    return "; ".join(f"{name}: {text}" for name, text in texts.items())


def build_evaluation(metrics: MetricsFile | None, out: Path, cohort: Any = None) -> dict[str, Any]:
    """Section 3 of the page from evaluate's metrics.json (None: absent)."""
    if metrics is None or not metrics.models:
        return {"available": False,
                "reason": "No evaluation results (metrics.json) were found: run `cxr-fishr evaluate`."}
    lines = [f"Measured on the {metrics.split} split ({', '.join(metrics.sites) or 'sites as listed'}). "
             f"Accuracy everywhere on this page is evaluate's thresholded accuracy ({_thresholds_line(metrics)}). "
             f"AUROC has a {metrics.n_bootstrap}-draw bootstrap 95% interval. Hover a number for its protocol."]
    if metrics.n_unlabelled_skipped:
        lines.append(f"{metrics.n_unlabelled_skipped:,} unlabelled image(s) of the split were left out of every "
                     "metric.")
    warnings = [reword(w, metrics) for w in metrics.warnings]
    # evaluate's own warnings win; a computed one is added only for a sample evaluate did not warn about
    ours = [w for w in sample_size_warnings(metrics, cohort) if not any(w.split(":")[0] in t for t in warnings)
            and not (w.startswith("the training hospitals' validation set") and any("(val)" in t for t in warnings))]
    shortcuts = shortcut_table(metrics)
    return {
        "available": True,
        "lines": lines,
        "warnings": warnings + ours,
        "figure": _headline_figure(metrics, out, cohort),
        "conflict_figure": None,
        "tables": [site_table(metrics)] + ([shortcuts] if not shortcuts.empty else []),
        "selection": aggregate_table(metrics),
        "baseline": baseline_table(metrics),
        "groups": group_table(metrics),
    }
