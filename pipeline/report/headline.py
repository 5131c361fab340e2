"""The headline numbers per algorithm and selection rule (mean and spread over seeds), shared by the report's
summary and the demo's ``summary.json``: read from evaluate's :class:`~pipeline.artefacts.metrics.MetricsFile` and
audit's :class:`~pipeline.artefacts.audit.AuditFile`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pipeline.artefacts.audit import AuditFile, AuditModel, Localisation, RegionShares
from pipeline.artefacts.metrics import MetricsFile, ModelEntry
from pipeline.artefacts.seeds import SeedSpread
from pipeline.protocol.selection import is_upper_bound, rule_order
from pipeline.report.baselines import majority_accuracy
from pipeline.report.shortcut_audit import shortcut_share
from pipeline.report.tables import is_number, reason_of

IG = "integrated_gradients"
# the numbers of every headline row (summary.json's keys), each a spread over the row's runs (seeds)
FIELDS = (
    "training_site_accuracy", "test_site_accuracy", "test_site_auroc", "conflict_accuracy",
    "counterfactual_flip_rate", "region_ablation_lungs", "region_ablation_shortcuts",
    "ig_lung_mass_fraction", "ig_shortcut_mass_fraction", "test_site_majority_accuracy",
)
# headline field -> the audit.json metric name its ``skipped`` list and ``not_measured`` maps use
AUDIT_KEYS = {"counterfactual_flip_rate": "counterfactual_flip_rate", "region_ablation_lungs": "lungs",
              "region_ablation_shortcuts": "shortcuts", "ig_lung_mass_fraction": "lung_mass_fraction",
              "ig_shortcut_mass_fraction": "shortcut_mass_fraction"}
NOT_AUDITED = "the audit ran on each run's model.pt only"
NOT_EVALUATED = "no evaluate result for this model (metrics.json)"
EVALUATE_FIELDS = ("training_site_accuracy", "test_site_accuracy", "test_site_auroc", "conflict_accuracy",
                   "aligned_accuracy", "test_site_majority_accuracy")


def _rule_order(rule: str) -> tuple[int, str]:
    return (rule_order(rule), rule)


def spread(values: list[Any]) -> dict[str, Any]:
    """One headline field over a group's runs, as summary.json writes it: ``{mean, std, n, values}`` of
    :class:`~pipeline.artefacts.seeds.SeedSpread` (the project's one seed estimator: sample sd, None for one
    value); NaN/None are left out."""
    seeds = SeedSpread.from_values(v if is_number(v) else None for v in values)
    return {"mean": seeds.mean, "std": seeds.sd, "n": seeds.n, "values": list(seeds.values)}


def lung_masks(audit: AuditFile | None) -> dict[str, int] | None:
    """The audit's lung-mask counts {provided, estimated, absent} as verdict.lung_mask_status reads them."""
    return audit.lung_masks.model_dump() if audit is not None else None


def val_at_step(entry: ModelEntry) -> float | None:
    """Pooled training-domain validation accuracy of the SELECTED checkpoint itself (evaluate's ``val_acc_at_step``);
    None otherwise (no checkpoint selected, or no val_acc logged at its step): never the mean of other steps."""
    return entry.val_acc_at_step


def val_reason(entry: ModelEntry) -> str | None:
    """Why ``val_at_step`` is None for one model (None when it is measured)."""
    if entry.val_acc_at_step is not None:
        return None
    if not entry.selection.selected:
        return "no checkpoint selected"
    return entry.not_measured.get("val_acc_at_step") or "the run logged no validation accuracy at the selected step"


def constant_where(name: str, entry: ModelEntry, split: str) -> str:
    """"<name>: all 11 test predictions one class at threshold 0.59" for a model whose scored predictions are."""
    return f"{name}: all {entry.overall.n} {split} predictions one class at threshold {entry.threshold:.2f}"


def constant_at_selection(name: str, entry: ModelEntry) -> str | None:
    """"<name>: at selection, on 6 validation images ... every prediction was one class" (train's selection check,
    evaluate's ``selection.constant_at_selection``); None when train's selection did not find it constant."""
    fact = entry.selection.constant_at_selection
    return f"{name}: {fact.text}" if fact is not None else None


def no_checkpoint(name: str, entry: ModelEntry) -> str | None:
    """"<run>: <reason>" when the run's selection found no checkpoint (``selection.selected`` false), else None."""
    if entry.selection.selected:
        return None
    # the verdict already says "no checkpoint selected"
    return f"{name}: {entry.selection.reason.removeprefix('no checkpoint selected: ')}"


def group_sizes(entry: ModelEntry) -> dict[str, Any]:
    """``n_conflict``, ``n_aligned`` summed over the sites (None when a site recorded none) and the
    ``conflict_attribute`` they were split by (None when unstated)."""
    blocks = list(entry.per_site.values())
    sizes: dict[str, Any] = {}
    for key in ("n_conflict", "n_aligned"):
        values = [getattr(b, key) for b in blocks]
        sizes[key] = sum(values) if values and all(v is not None for v in values) else None
    attributes = {b.conflict_attribute for b in blocks if b.conflict_attribute}
    sizes["conflict_attribute"] = ", ".join(sorted(attributes)) or None
    return sizes


def _smallest(values: list[Any]) -> int | None:
    """The smallest group size over seeds (None when any run did not record it: never invented)."""
    return int(min(values)) if values and all(is_number(v) for v in values) else None


def site_majority(entry: ModelEntry) -> float | None:
    """Mean over test sites of the always-majority accuracy (evaluate's value, else from the class counts)."""
    if entry.mean_site.majority_accuracy is not None:
        return entry.mean_site.majority_accuracy
    values = [majority_accuracy(b) for b in entry.per_site.values()]
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


# headline field -> evaluate's mean_site key: the reason evaluate recorded travels under the headline's name
MEAN_SITE_FIELDS = {"test_site_accuracy": "accuracy", "test_site_auroc": "auroc", "conflict_accuracy": "conflict_accuracy",
                    "aligned_accuracy": "aligned_accuracy", "accuracy": "accuracy",
                    "test_site_majority_accuracy": "majority_accuracy"}


@dataclass(frozen=True)
class Run:
    """One scored or audited checkpoint: its metrics.json entry (None: audited only) and its audit.json entry (None:
    not audited; the audit ran on each run's model.pt, an ``<run>@<rule>`` checkpoint has no audit numbers)."""

    name: str
    algorithm: str
    rule: str
    seed: int | None
    entry: ModelEntry | None
    audited: AuditModel | None


def _ablation(audited: AuditModel | None) -> RegionShares | None:
    """Region ablation's overall absolute shares (signed drops cancel between images where a region is evidence for
    and against the prediction); None when not run."""
    shares = audited.region_ablation_abs_share if audited is not None else None
    return shares.overall if shares is not None else None


def _ig(audited: AuditModel | None) -> Localisation | None:
    method = audited.methods.get(IG) if audited is not None else None
    return method.overall if method is not None else None


def _audit_reasons(audited: AuditModel, audit: AuditFile) -> dict[str, str | None]:
    """Why each audit field of the headline is null for one audited model: audit's ``not_measured``/``skipped``."""
    skipped = {s.metric: s.reason for s in audit.skipped}
    blocks = [audited.interventions.overall, _ablation(audited), _ig(audited)]
    reasons: dict[str, str | None] = {}
    for field, key in AUDIT_KEYS.items():
        found = [reason_of(b, key) or reason_of(b, field) for b in blocks] + [skipped.get(key), skipped.get(field)]
        if field.startswith("region_ablation"):  # audit names these "region_ablation_share.lungs" / ".<kinds>"
            found += [skipped.get(f"region_ablation_share.{key}"), reason_of(audited, "region_ablation_abs_share"),
                      reason_of(audited, "region_ablation_share"), skipped.get("region_ablation_share")]
        if field.startswith("ig_") and IG not in audited.methods:
            found.insert(0, "method not run (audit.methods)")
        reasons[field] = next((r for r in found if r), None)
    if not audit.shortcut_masks:
        reasons["region_ablation_shortcuts"] = "no shortcut mask in the cache"
    return reasons


def _reasons(run: Run, audit: AuditFile | None) -> dict[str, str]:
    """Why each headline field is null for one run: the stages' ``not_measured``/``skipped`` reasons."""
    if run.entry is None:
        reasons: dict[str, str | None] = dict.fromkeys(EVALUATE_FIELDS, NOT_EVALUATED)
    else:
        reasons = {field: run.entry.mean_site.not_measured.get(key) for field, key in MEAN_SITE_FIELDS.items()}
    if run.audited is None or audit is None:
        reasons.update(dict.fromkeys(AUDIT_KEYS, NOT_AUDITED))
    else:
        reasons.update(_audit_reasons(run.audited, audit))
    return {k: v for k, v in reasons.items() if v}


def lungs_estimated(audit: AuditFile | None) -> bool:
    """Whether any lung number of this audit rests on estimated lung masks."""
    from pipeline.report.verdict import lung_mask_status

    return lung_mask_status(lung_masks(audit))[0] == "estimated"


def _audit_sizes(audited: AuditModel | None) -> tuple[int | None, int | None]:
    """(counterfactual pairs, images region ablation averaged over) of one audited model; None where unrecorded."""
    ablation = _ablation(audited)
    return (audited.interventions.overall.n_counterfactual if audited is not None else None,
            ablation.n if ablation is not None else None)


def _numbers(run: Run, shortcut_masks: bool) -> dict[str, Any]:
    """Every FIELDS value of one run (None where not measured)."""
    entry, audited = run.entry, run.audited
    interventions = audited.interventions.overall if audited is not None else None
    ablation, ig = _ablation(audited), _ig(audited)
    return {
        "training_site_accuracy": val_at_step(entry) if entry else None,
        "test_site_accuracy": entry.mean_site.accuracy if entry else None,
        "test_site_auroc": entry.mean_site.auroc if entry else None,
        "conflict_accuracy": entry.mean_site.conflict_accuracy if entry else None,
        "counterfactual_flip_rate": interventions.counterfactual_flip_rate if interventions else None,
        "region_ablation_lungs": ablation.lungs if ablation else None,
        # Without shortcut masks the shortcut kinds' shares are not measurements, whatever number audit wrote.
        "region_ablation_shortcuts": shortcut_share(ablation) if shortcut_masks else None,
        "ig_lung_mass_fraction": ig.lung_mass_fraction if ig else None,
        "ig_shortcut_mass_fraction": ig.shortcut_mass_fraction if ig and shortcut_masks else None,
        "test_site_majority_accuracy": site_majority(entry) if entry else None,
    }


def _runs(metrics: MetricsFile | None, audit: AuditFile | None) -> list[Run]:
    """metrics.json's models plus every audited model evaluate did not score: an audit-only model still gets its
    audit numbers; its accuracies read "not measured"."""
    scored = metrics.models if metrics is not None else {}
    audited = audit.models if audit is not None else {}
    runs = [Run(n, e.algorithm, e.selection_rule, e.seed, e, audited.get(n)) for n, e in scored.items()]
    runs += [Run(n, a.algorithm, a.selection_rule, a.seed, None, a) for n, a in audited.items() if n not in scored]
    return runs


def _by_algorithm_and_rule(runs: list[Run]) -> tuple[dict[tuple[str, str], list[Run]], dict[str, str]]:
    """(``{(algorithm, rule): [runs]}`` in report order, ``{algorithm: rule of its model.pt runs}``): a name without
    ``@`` is a run's own model.pt, an ``<run>@<rule>`` one of evaluate's other selected checkpoints."""
    groups: dict[tuple[str, str], list[Run]] = {}
    primary: dict[str, str] = {}
    for run in runs:
        groups.setdefault((run.algorithm, run.rule), []).append(run)
        if "@" not in run.name:
            primary.setdefault(run.algorithm, run.rule)
    ordered = dict(sorted(groups.items(), key=lambda kv: (kv[0][0], _rule_order(kv[0][1]))))
    return ordered, primary


def _group_reasons(members: list[Run], audit: AuditFile | None) -> dict[str, str]:
    """Why each headline field is null for a group: the first member's reason wins."""
    reasons: dict[str, str] = {}
    for run in members:
        for field, why in _reasons(run, audit).items():
            reasons.setdefault(field, why)
        if run.entry is not None and val_reason(run.entry):
            reasons.setdefault("training_site_accuracy", val_reason(run.entry))
    return reasons


def _any_smallest(values: list[Any]) -> int | None:
    """:func:`_smallest` when at least one member recorded the size, else None."""
    return _smallest(values) if any(v is not None for v in values) else None


def _rule_block(rule: str, members: list[Run], audit: AuditFile | None, split: str) -> dict[str, Any]:
    """The headline numbers of one (algorithm, selection rule) over its runs (seeds)."""
    numbers = [_numbers(r, audit is None or audit.shortcut_masks) for r in members]
    scored = [r for r in members if r.entry is not None]
    sizes = [group_sizes(r.entry) for r in scored]
    counted = [_audit_sizes(r.audited) for r in members]
    # scored predictions all one class (evaluate's split and threshold): "reads nothing in the image"
    constant = [r for r in scored if r.entry.constant_on_split]
    return {
        "selection_rule": rule,
        "upper_bound": is_upper_bound(rule),
        "seeds": sorted({r.seed for r in members if r.seed is not None}),
        "models": [r.name for r in members],
        "evaluated": [r.name for r in scored],
        "constant_predictor": [r.name for r in constant],
        "constant_where": [constant_where(r.name, r.entry, split) for r in constant],
        # train's selection check (0.5 on its selection set): a different fact, worded as such
        "constant_at_selection": [t for t in (constant_at_selection(r.name, r.entry) for r in scored) if t],
        "split": split,
        "no_checkpoint": [t for t in (no_checkpoint(r.name, r.entry) for r in scored) if t],
        "n_conflict": _smallest([z["n_conflict"] for z in sizes]),
        "n_aligned": _smallest([z["n_aligned"] for z in sizes]),
        "conflict_attribute": next((z["conflict_attribute"] for z in sizes if z["conflict_attribute"]), None),
        "n_counterfactual": _any_smallest([c[0] for c in counted]),
        "n_ablation": _any_smallest([c[1] for c in counted]),
        "not_measured": _group_reasons(members, audit),
        # lung numbers of this audit rest on estimated masks: every place that shows one says so
        "lung_masks_estimated": lungs_estimated(audit),
        "thresholds": [r.entry.threshold for r in scored] + [None] * (len(members) - len(scored)),
        "threshold_source": next((r.entry.threshold_source for r in scored if r.entry.threshold_source), None),
        **{f: spread([x[f] for x in numbers]) for f in FIELDS},
    }


def headline(metrics: MetricsFile | None, audit: AuditFile | None) -> dict[str, dict[str, Any]]:
    """``{algorithm: {"selection_rule", "seeds", "models", <FIELDS as spreads>, "by_rule": {rule: {...}}}}``.

    The top level of each algorithm is the rule its runs were selected with (``model.pt``); ``by_rule`` holds every
    rule evaluate reported (``RUN/selected/<rule>.pt``), training-domain validation included. ``metrics``: evaluate's
    MetricsFile, ``audit``: audit's AuditFile (``.load`` them; None: that stage's output is absent).
    """
    groups, primary = _by_algorithm_and_rule(_runs(metrics, audit))
    split = metrics.split if metrics is not None else "test"
    result: dict[str, dict[str, Any]] = {}
    for (algorithm, rule), members in groups.items():
        result.setdefault(algorithm, {"by_rule": {}})["by_rule"][rule] = _rule_block(rule, members, audit, split)
    for algorithm, entry in result.items():
        rule = primary.get(algorithm) or next(iter(entry["by_rule"]))
        entry.update(entry["by_rule"][rule])
    return result
