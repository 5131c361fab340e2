"""Complete, valid stage outputs built from the few numbers a test is about: evaluate's ``metrics.json`` (validated
by :class:`pipeline.artefacts.metrics.MetricsFile`), so report tests read the same typed files the stages write.

Every unstated number is "not measured" with a reason, as evaluate writes it (None plus ``not_measured[key]``),
never an invented value: a test that states ``accuracy=0.5`` gets exactly that and nothing else measured.
"""

from __future__ import annotations

from typing import Any

UNSTATED = "not stated by this test"
SCORES = ("accuracy", "majority_accuracy", "balanced_accuracy", "auroc", "ece", "conflict_accuracy",
          "aligned_accuracy")
MEAN_SITE = ("accuracy", "balanced_accuracy", "auroc", "ece", "conflict_accuracy", "aligned_accuracy",
             "majority_accuracy")


def _reasons(block: dict[str, Any], keys: tuple[str, ...], given: dict[str, str] | None) -> dict[str, str]:
    """``not_measured`` of a block: the test's own reasons, else UNSTATED for every key left None."""
    reasons = {k: UNSTATED for k in keys if block.get(k) is None}
    reasons.update(given or {})
    return {k: v for k, v in reasons.items() if block.get(k) is None}


def group_scores(*, n: int | None = None, n_pos: int | None = None, threshold: float = 0.5,
                 selection_rule: str = "training_domain", split: str = "test",
                 confusion_matrix: list[list[int]] | None = None, not_measured: dict[str, str] | None = None,
                 **given: Any) -> dict[str, Any]:
    """One GroupScores block (scoring.GroupScorer). With a ``confusion_matrix`` [[tn, fp], [fn, tp]], ``n``,
    ``n_pos`` and ``constant_predictor`` follow from it as evaluate derives them; else ``n`` images (20), half
    positive unless ``n_pos`` says. ``majority_accuracy`` follows from the class counts as evaluate writes it. Every
    score in ``given`` (accuracy, auroc, conflict_accuracy, n_conflict, ...) is as stated, the rest not measured."""
    if confusion_matrix is not None:
        (tn, fp), (fn, tp) = confusion_matrix
        n = tn + fp + fn + tp if n is None else n
        n_pos = fn + tp if n_pos is None else n_pos
        given.setdefault("constant_predictor", tn + fn == 0 or fp + tp == 0)
    n = 20 if n is None else n
    n_pos = n // 2 if n_pos is None else n_pos
    block: dict[str, Any] = {
        "n": n, "n_pos": n_pos, "n_neg": n - n_pos, **dict.fromkeys(SCORES),
        "majority_accuracy": max(n_pos, n - n_pos) / n if n else None, "constant_predictor": False,
        "threshold": threshold, "auroc_ci": [None, None], "confusion_matrix": confusion_matrix or [[0, 0], [0, 0]],
        "conflict_attribute": None, "n_conflict": None, "n_aligned": None, "n_unknown": None, "shortcuts": {},
        "selection_rule": selection_rule, "split": split, "notes": [],
    }
    block.update(given)
    block["not_measured"] = _reasons(block, SCORES, not_measured)
    block["notes"] = block["notes"] or list(block["not_measured"].values())
    return block


def mean_site(*, not_measured: dict[str, str] | None = None, **given: Any) -> dict[str, Any]:
    block = {**dict.fromkeys(MEAN_SITE), **given}
    block["not_measured"] = _reasons(block, MEAN_SITE, not_measured)
    return block


def _worst(per_site: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for key in ("accuracy", "balanced_accuracy", "auroc", "conflict_accuracy"):
        values = {s: b[key] for s, b in per_site.items() if b.get(key) is not None}
        out[key] = ({"site": min(values, key=values.get), "value": min(values.values())} if values
                    else {"site": None, "value": None, "not_measured": UNSTATED})
    return out


def selection(*, rule: str = "training_domain", step: int | None = 100, selected: bool = True,
              constant_predictor: bool = False, reason: str = "selected", evaluations: int | None = 3,
              constant_at_selection: dict[str, Any] | None = None) -> dict[str, Any]:
    """A model entry's ``selection`` (train's truth plus evaluate's constant_at_selection fact)."""
    return {"rule": rule, "step": step, "constant_predictor": constant_predictor, "selected": selected,
            "reason": reason, "source": "selection.json", "evaluations": evaluations,
            "constant_at_selection": constant_at_selection}


def _site_means(per_site: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """mean_site as evaluate computes it: each key's unweighted mean over the sites that measured it."""
    means = {}
    for key in MEAN_SITE:
        values = [b[key] for b in per_site.values() if b.get(key) is not None]
        means[key] = sum(values) / len(values) if values else None
    return means


def model_entry(name: str, *, algorithm: str = "erm", seed: int | None = 0, selection_rule: str = "training_domain",
                split: str = "test", threshold: float = 0.5, per_site: dict[str, dict[str, Any]] | None = None,
                mean: dict[str, Any] | None = None, select: dict[str, Any] | None = None,
                **given: Any) -> dict[str, Any]:
    """One metrics.json model entry. ``per_site``: site -> GroupScores (group_scores; scored at ``threshold``);
    ``mean``: mean_site's numbers (default: each score's mean over the sites, as evaluate computes it); ``select``:
    selection's fields; ``given``: any other key (val_acc_at_step, constant_on_split, history, overall, ...).
    ``overall`` defaults to the one site's block (a sum of the sites' sizes with several)."""
    per_site = per_site if per_site is not None else {"harbour": group_scores(selection_rule=selection_rule)}
    for block in per_site.values():
        block["threshold"] = threshold
    overall = (dict(next(iter(per_site.values()))) if len(per_site) == 1 else
               group_scores(n=sum(b["n"] for b in per_site.values()) or 1, n_pos=sum(b["n_pos"] for b in
                            per_site.values()), selection_rule=selection_rule, split=split, threshold=threshold))
    overall = given.pop("overall", overall)
    constant = bool(given.pop("constant_on_split", overall["constant_predictor"]))
    run = name.split("@")[0]
    entry = {
        "name": name, "run": run, "model_dir": f"/runs/{run}", "checkpoint": f"/runs/{run}/model.pt",
        "algorithm": algorithm, "seed": seed, "step": 100, "weights_step": 100, "selection_rule": selection_rule,
        "selection": selection(rule=selection_rule, **(select or {})), "upper_bound": selection_rule == "oracle",
        "split": split, "threshold": threshold, "threshold_source": "val (training domains)",
        "threshold_set": {"value": threshold, "source": "val (training domains)", "n": 20, "n_pos": 10,
                          "n_neg": 10, "warning": None},
        "n_unlabelled_skipped": 0, "protocol": f"selection={selection_rule}; split={split}",
        "constant_predictor": constant, "constant_on_split": constant, "overall": overall,
        "per_site": per_site, "per_group": {}, "mean_site": mean_site(**(mean if mean is not None else
                                                                           _site_means(per_site))),
        "worst_site": _worst(per_site), "history": None, "val_acc_at_step": None, "not_measured": {},
    }
    entry.update(given)
    if entry["val_acc_at_step"] is None:
        entry["not_measured"] = {"val_acc_at_step": UNSTATED, **entry["not_measured"]}
    return entry


def metrics_json(models: dict[str, dict[str, Any]], *, split: str = "test", **given: Any) -> dict[str, Any]:
    """A whole metrics.json around ``models`` (name -> model_entry); aggregates by evaluate's own function;
    validated by MetricsFile (a DataError names the field a test got wrong)."""
    from pipeline.artefacts.metrics import MetricsFile
    from pipeline.evaluate.history import aggregate_models

    sites = sorted({s for e in models.values() for s in e["per_site"]})
    data = {
        "schema_version": MetricsFile.SCHEMA_VERSION, "stage": "evaluate", "split": split,
        "ingest_dir": "/ingest", "ingest_hash": None, "sites": sites, "groups": [],
        "shortcut_attribute": None, "conflict_attribute": None, "conflict_attribute_not_measured": UNSTATED,
        "shortcut_attributes": [], "shortcut_directions": {}, "shortcut_notes": [],
        "n_images": sum(b["n"] for b in next(iter(models.values()))["per_site"].values()) if models else 0,
        "n_unlabelled_skipped": 0, "warnings": [], "n_bootstrap": 0, "bootstrap_seed": 0, "ece_bins": 15,
        "models": models, "aggregates": aggregate_models(models),
        "metadata_baseline": {"features": [], "fitted_on": "train", "n_train": 0, "note": UNSTATED, "overall": None,
                              "per_site": {}, "per_group": {}, "mean_site": None, "worst_site": None},
        "metadata_baseline_auroc": {},
    }
    data.update(given)
    MetricsFile.from_dict(data, where="tests/helpers/stage_outputs.py")
    return data


def metrics_file(models: dict[str, dict[str, Any]], **given: Any) -> Any:
    """:func:`metrics_json` loaded as the report reads it (a MetricsFile)."""
    from pipeline.artefacts.metrics import MetricsFile

    return MetricsFile.from_dict(metrics_json(models, **given))


def metadata_baseline(per_site: dict[str, dict[str, Any]], *, features: tuple[str, ...] = ("position",)
                      ) -> dict[str, Any]:
    """A fitted metadata-only baseline scored on ``per_site`` (site -> group_scores)."""
    return {"features": list(features), "fitted_on": "training rows", "n_train": 40, "threshold": 0.5,
            "threshold_source": "val (training domains)", "overall": next(iter(per_site.values()), None),
            "per_site": per_site, "per_group": {}, "mean_site": mean_site(**_site_means(per_site)),
            "worst_site": _worst(per_site)}
