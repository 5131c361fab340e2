"""The headline numbers per algorithm and selection rule (mean and spread over seeds), shared by the report's
summary and the demo's ``summary.json``.
"""

from __future__ import annotations

import math
import re
from typing import Any

from pipeline.protocol.selection import is_upper_bound, rule_order
from pipeline.report.baselines import majority_accuracy, scored_constant
from pipeline.report.shortcut_audit import shortcut_share
from pipeline.report.tables import is_number, reason_of

IG = "integrated_gradients"
# name in summary.json -> (source, how to read it from one model's entries)
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


AUDIT_ONLY = "_audit_only"  # marks a model entry made from audit.json alone (never written out)


def _rule_order(rule: str) -> tuple[int, str]:
    return (rule_order(rule), rule)


def spread(values: list[Any]) -> dict[str, Any]:
    """Mean, sample standard deviation (None for one value) and the values themselves; NaN/None are left out."""
    numbers = [float(v) for v in values if is_number(v)]
    if not numbers:
        return {"mean": None, "std": None, "n": 0, "values": []}
    mean = sum(numbers) / len(numbers)
    std = math.sqrt(sum((x - mean) ** 2 for x in numbers) / (len(numbers) - 1)) if len(numbers) > 1 else None
    return {"mean": mean, "std": std, "n": len(numbers), "values": numbers}


def val_at_step(entry: dict[str, Any]) -> Any:
    """Pooled training-domain validation accuracy of the SELECTED checkpoint itself (evaluate's ``val_acc_at_step``);
    None otherwise (no checkpoint selected, or no val_acc logged at its step): never the mean of other steps."""
    return entry["val_acc_at_step"] if is_number(entry.get("val_acc_at_step")) else None


def val_reason(entry: dict[str, Any]) -> str | None:
    """Why ``val_at_step`` is None for one model (None when it is measured)."""
    if is_number(entry.get("val_acc_at_step")):
        return None
    selection = entry.get("selection") if isinstance(entry.get("selection"), dict) else {}
    if selection.get("selected") is False:
        return "no checkpoint selected"
    return reason_of(entry, "val_acc_at_step") or "the run logged no validation accuracy at the selected step"


def constant_where(name: str, entry: dict[str, Any], split: str) -> str:
    """"<name>: all 11 test predictions one class at threshold 0.59" for a model whose scored predictions are."""
    n = (entry.get("overall") or {}).get("n")
    count = f"{int(n)} " if is_number(n) else ""
    threshold = f" at threshold {entry['threshold']:.2f}" if is_number(entry.get("threshold")) else ""
    return f"{name}: all {count}{split} predictions one class{threshold}"


TRAIN_THRESHOLD = 0.5  # train predicts by the arg-max of two logits: P(label = 1) >= 0.5
SPLIT_WORDS = {"val": "validation images of the training hospitals", "holdout": "held-out-hospital images",
               "ood_val": "validation-hospital images", "test": "test images"}


def _constant_text(fact: dict[str, Any]) -> str:
    """"at selection, on 6 validation images of the training hospitals at threshold 0.5, every prediction was one
    class (all 3 evaluations)" for a ``selection.constant_at_selection`` fact written without its ``text``
    (evaluate writes the same words with it)."""
    n = fact.get("n")
    count = f"{int(n)} " if isinstance(n, int) else ""
    where = SPLIT_WORDS.get(str(fact.get("split")), f"{fact.get('split')} images")
    evaluations = fact.get("evaluations")
    every = f" (all {int(evaluations)} evaluations)" if isinstance(evaluations, int) else ""
    return (f"at selection, on {count}{where} at threshold {fact.get('threshold', TRAIN_THRESHOLD):g}, every "
            f"prediction was one class{every}")


def constant_at_selection(name: str, entry: dict[str, Any]) -> str | None:
    """"<name>: at selection, on 6 validation images ... every prediction was one class" (train's selection check,
    evaluate's ``selection.constant_at_selection``); None when train's selection did not find it constant."""
    selection = entry.get("selection") if isinstance(entry.get("selection"), dict) else {}
    fact = selection.get("constant_at_selection")
    if isinstance(fact, dict):
        return f"{name}: {fact.get('text') or _constant_text(fact)}"
    if selection.get("constant_predictor") is True:  # an older metrics.json: the split and n were not recorded
        found = re.search(r"on its (\w+) selection set", str(selection.get("reason") or ""))
        where = f"its {found.group(1)} selection set" if found else "its selection set"
        return f"{name}: at selection, on {where} at threshold 0.5 (train's arg-max), every prediction was one class"
    return None


def no_checkpoint(name: str, entry: dict[str, Any]) -> str | None:
    """"<run>: <reason>" when the run's selection found no checkpoint (``selection.selected`` false), else None."""
    selection = entry.get("selection") if isinstance(entry.get("selection"), dict) else {}
    if selection.get("selected") is not False:
        return None
    reason = str(selection.get("reason") or "no checkpoint selected").removeprefix("no checkpoint selected: ")
    if selection.get("constant_predictor") is True and not isinstance(selection.get("constant_at_selection"), dict):
        # an older metrics.json: its reason called train's check "constant predictor"; word it as what it is
        tail = reason.split("; ", 1)[1] if "; " in reason else ""
        return str(constant_at_selection(name, entry)) + (f"; {tail}" if tail else "")
    return f"{name}: {reason}"  # the verdict already says "no checkpoint selected"


def group_sizes(entry: dict[str, Any]) -> dict[str, Any]:
    """``n_conflict``, ``n_aligned`` (over the test sites; None where evaluate recorded none) and the
    ``conflict_attribute`` they were split by (None when unstated)."""
    mean_site, blocks = entry.get("mean_site") or {}, [
        b for b in (entry.get("per_site") or {}).values() if isinstance(b, dict)]
    sizes: dict[str, Any] = {}
    for key in ("n_conflict", "n_aligned"):
        values = [b.get(key) for b in blocks]
        summed = int(sum(values)) if values and all(is_number(v) for v in values) else None
        sizes[key] = int(mean_site[key]) if is_number(mean_site.get(key)) else summed
    attributes = {str(b["conflict_attribute"]) for b in [mean_site, *blocks] if b.get("conflict_attribute")}
    sizes["conflict_attribute"] = ", ".join(sorted(attributes)) or None
    return sizes


def _smallest(values: list[Any]) -> int | None:
    """The smallest group size over seeds (None when any run did not record it: never invented)."""
    return int(min(values)) if values and all(is_number(v) for v in values) else None


def site_majority(entry: dict[str, Any]) -> float | None:
    """Mean over test sites of the always-majority accuracy (evaluate's value, else from the class counts)."""
    if is_number((entry.get("mean_site") or {}).get("majority_accuracy")):
        return float(entry["mean_site"]["majority_accuracy"])
    values = [majority_accuracy(b) for b in (entry.get("per_site") or {}).values() if isinstance(b, dict)]
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


MEAN_SITE_FIELDS = {"test_site_accuracy": "accuracy", "test_site_auroc": "auroc", "conflict_accuracy": "conflict_accuracy",
                    "aligned_accuracy": "aligned_accuracy", "accuracy": "accuracy",
                    "test_site_majority_accuracy": "majority_accuracy"}


def _reasons(entry: dict[str, Any], audited: dict[str, Any] | None, audit: dict[str, Any] | None) -> dict[str, str]:
    """Why each headline field is null for one model: the stages' ``not_measured``/``skipped`` reasons."""
    mean_site = entry.get("mean_site") or {}
    # headline field -> evaluate's mean_site key: the reason evaluate recorded travels under the headline's name
    reasons = {field: reason_of(mean_site, key) for field, key in MEAN_SITE_FIELDS.items()}
    if entry.get(AUDIT_ONLY):
        reasons.update(dict.fromkeys(EVALUATE_FIELDS, NOT_EVALUATED))
    if audited is None:
        return {**{k: v for k, v in reasons.items() if v}, **dict.fromkeys(AUDIT_KEYS, NOT_AUDITED)}
    skipped = {str(s.get("metric")): str(s.get("reason")) for s in (audit or {}).get("skipped") or []
               if isinstance(s, dict)}
    blocks = [((audited.get("interventions") or {}).get("overall") or {}),
              ((audited.get("region_ablation_abs_share") or audited.get("region_ablation_share") or {})
               .get("overall") or {}),
              ((((audited.get("methods") or {}).get(IG) or {}).get("overall")) or {})]
    for field, key in AUDIT_KEYS.items():
        found = [reason_of(b, key) or reason_of(b, field) for b in blocks] + [skipped.get(key), skipped.get(field)]
        if field.startswith("region_ablation"):  # audit names these "region_ablation_share.lungs" / ".<kinds>"
            found += [skipped.get(f"region_ablation_share.{key}"), reason_of(audited, "region_ablation_abs_share"),
                      reason_of(audited, "region_ablation_share"), skipped.get("region_ablation_share")]
        if field.startswith("ig_") and IG not in (audited.get("methods") or {}):
            found.insert(0, "method not run (audit.methods)")
        reasons[field] = next((r for r in found if r), None)
    if (audit or {}).get("shortcut_masks") is False:
        reasons["region_ablation_shortcuts"] = "no shortcut mask in the cache"
    return {k: v for k, v in reasons.items() if v}


def _estimated(audit: dict[str, Any] | None) -> bool:
    from pipeline.report.verdict import lung_mask_status

    return lung_mask_status((audit or {}).get("lung_masks"))[0] == "estimated"


def _audit_sizes(audited: dict[str, Any] | None) -> tuple[Any, Any]:
    """(counterfactual pairs, images region ablation averaged over) of one audited model; None where unrecorded."""
    audited = audited or {}
    interventions = (audited.get("interventions") or {}).get("overall") or {}
    ablation = ((audited.get("region_ablation_abs_share") or audited.get("region_ablation_share") or {})
                .get("overall") or {})
    return interventions.get("n_counterfactual"), ablation.get("n")


def _model_numbers(entry: dict[str, Any], audited: dict[str, Any] | None,
                   shortcut_masks: bool = True) -> dict[str, Any]:
    mean_site = entry.get("mean_site") or {}
    audited = audited or {}
    interventions = (audited.get("interventions") or {}).get("overall") or {}
    # Absolute shares: signed drops cancel between images where a region is evidence for and against the prediction
    ablation = ((audited.get("region_ablation_abs_share") or audited.get("region_ablation_share") or {})
                .get("overall") or {})
    ig = ((audited.get("methods") or {}).get(IG) or {}).get("overall") or {}
    return {
        "training_site_accuracy": val_at_step(entry),
        "test_site_accuracy": mean_site.get("accuracy"),
        "test_site_auroc": mean_site.get("auroc"),
        "conflict_accuracy": mean_site.get("conflict_accuracy"),
        "counterfactual_flip_rate": interventions.get("counterfactual_flip_rate"),
        "region_ablation_lungs": ablation.get("lungs"),
        # Without shortcut masks the shortcut kinds' shares are not measurements, whatever number audit wrote.
        "region_ablation_shortcuts": shortcut_share(ablation) if ablation and shortcut_masks else None,
        "ig_lung_mass_fraction": ig.get("lung_mass_fraction"),
        "ig_shortcut_mass_fraction": ig.get("shortcut_mass_fraction") if shortcut_masks else None,
        "test_site_majority_accuracy": site_majority(entry),
    }


def _with_audit_only(metrics: dict[str, Any] | None, audited: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """metrics.json's model entries plus one entry per audited model evaluate did not score: an audit-only model
    still gets its audit numbers; its accuracies read "not measured"."""
    entries = dict(((metrics or {}).get("models") or {}).items())
    entries.update({n: {"algorithm": a.get("algorithm", n), "selection_rule": a.get("selection_rule"),
                        "seed": a.get("seed"), AUDIT_ONLY: True}
                    for n, a in audited.items() if isinstance(a, dict) and n not in entries})
    return entries


Members = list[tuple[str, dict[str, Any]]]


def _by_algorithm_and_rule(entries: dict[str, dict[str, Any]]) -> tuple[dict[tuple[str, str], Members], dict[str, str]]:
    """(``{(algorithm, rule): [(name, entry)]}`` in report order, ``{algorithm: rule of its model.pt runs}``): a name
    without ``@`` is a run's own model.pt, an ``<run>@<rule>`` one of evaluate's other selected checkpoints."""
    groups: dict[tuple[str, str], Members] = {}
    primary: dict[str, str] = {}
    for name, entry in entries.items():
        algorithm, rule = str(entry.get("algorithm")), str(entry.get("selection_rule"))
        groups.setdefault((algorithm, rule), []).append((name, entry))
        if "@" not in name:
            primary.setdefault(algorithm, rule)
    ordered = dict(sorted(groups.items(), key=lambda kv: (kv[0][0], _rule_order(kv[0][1]))))
    return ordered, primary


def _group_reasons(members: Members, audited: dict[str, Any], audit: dict[str, Any] | None) -> dict[str, str]:
    """Why each headline field is null for a group: the first member's reason wins."""
    reasons: dict[str, str] = {}
    for n, e in members:
        for field, why in _reasons(e, audited.get(n), audit).items():
            reasons.setdefault(field, why)
        if not e.get(AUDIT_ONLY) and val_reason(e):
            reasons.setdefault("training_site_accuracy", val_reason(e))
    return reasons


def _any_smallest(values: list[Any]) -> int | None:
    """:func:`_smallest` when at least one member recorded the size, else None."""
    return _smallest(values) if any(v is not None for v in values) else None


def _rule_block(rule: str, members: Members, audited: dict[str, Any], audit: dict[str, Any] | None,
                split: str) -> dict[str, Any]:
    """The headline numbers of one (algorithm, selection rule) over its runs (seeds)."""
    # The audit ran on model.pt only: an ``<run>@<rule>`` checkpoint has no audit numbers of its own.
    masks = (audit or {}).get("shortcut_masks") is not False
    numbers = [_model_numbers(e, audited.get(n), masks) for n, e in members]
    sizes = [group_sizes(e) for _, e in members]
    counted = [_audit_sizes(audited.get(n)) for n, _ in members]
    return {
        "selection_rule": rule,
        "upper_bound": is_upper_bound(rule),
        "seeds": sorted({e.get("seed") for _, e in members if e.get("seed") is not None}),
        "models": [n for n, _ in members],
        "evaluated": [n for n, e in members if not e.get(AUDIT_ONLY)],
        # scored predictions all one class (evaluate's split and threshold): "reads nothing in the image"
        "constant_predictor": [n for n, e in members if scored_constant(e)],
        "constant_where": [constant_where(n, e, split) for n, e in members if scored_constant(e)],
        # train's selection check (0.5 on its selection set): a different fact, worded as such
        "constant_at_selection": [t for t in (constant_at_selection(n, e) for n, e in members) if t],
        "split": split,
        "no_checkpoint": [t for t in (no_checkpoint(n, e) for n, e in members) if t],
        "n_conflict": _smallest([z["n_conflict"] for z in sizes]),
        "n_aligned": _smallest([z["n_aligned"] for z in sizes]),
        "conflict_attribute": next((z["conflict_attribute"] for z in sizes if z["conflict_attribute"]), None),
        "n_counterfactual": _any_smallest([c[0] for c in counted]),
        "n_ablation": _any_smallest([c[1] for c in counted]),
        "not_measured": _group_reasons(members, audited, audit),
        # lung numbers of this audit rest on estimated masks: every place that shows one says so
        "lung_masks_estimated": _estimated(audit),
        "thresholds": [e.get("threshold") if is_number(e.get("threshold")) else None for _, e in members],
        "threshold_source": next((str(e["threshold_source"]) for _, e in members if e.get("threshold_source")), None),
        **{f: spread([x[f] for x in numbers]) for f in FIELDS},
    }


def headline(metrics: dict[str, Any] | None, audit: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """``{algorithm: {"selection_rule", "seeds", "models", <FIELDS as spreads>, "by_rule": {rule: {...}}}}``.

    The top level of each algorithm is the rule its runs were selected with (``model.pt``); ``by_rule`` holds every
    rule evaluate reported (``RUN/selected/<rule>.pt``), training-domain validation included.
    """
    audited = (audit or {}).get("models") or {}
    groups, primary = _by_algorithm_and_rule(_with_audit_only(metrics, audited))
    split = str((metrics or {}).get("split") or "test")
    result: dict[str, dict[str, Any]] = {}
    for (algorithm, rule), members in groups.items():
        result.setdefault(algorithm, {"by_rule": {}})["by_rule"][rule] = _rule_block(rule, members, audited, audit,
                                                                                     split)
    for algorithm, entry in result.items():
        rule = primary.get(algorithm) or next(iter(entry["by_rule"]))
        entry.update(entry["by_rule"][rule])
    return result
