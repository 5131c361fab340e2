"""`evaluate`: per-site and per site|position metrics of trained models on a manifest split (docs/design/metrics.md).

``run(model_dirs=..., ingest_dir=..., out=...)`` writes ``metrics.json``, ``metrics.csv`` and ``stage.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
SPLIT_CHOICES = ("train", "val", "ood_val", "test")


@dataclass(frozen=True)
class EvaluateResult:
    out: Path
    metrics_path: Path
    metrics: dict[str, Any]


def _baseline(frame, evaluated, *, split: str, n_bootstrap: int, seed: int, directions) -> dict[str, Any]:
    """The metadata-only logistic regression, fitted on the labelled train rows and scored like a model."""
    from pipeline.decision_threshold import Threshold, threshold_from_probabilities, val_rows
    from pipeline.evaluate.baseline import METADATA_FEATURES, MetadataBaseline
    from pipeline.evaluate.scoring import GroupScorer, score_frame
    from pipeline.shortcuts import label_values, labelled_mask

    train = frame[frame["split"] == "train"]
    train = train[labelled_mask(train)]
    if label_values(train).tolist().count(1) in (0, len(train)):  # nothing to fit: say so, the models still score
        return {"features": list(METADATA_FEATURES), "fitted_on": "train split of the training domains",
                "n_train": int(len(train)), "note": "not fitted: the train split does not hold both labels",
                "overall": None, "per_site": {}, "per_group": {}, "mean_site": None, "worst_site": None,
                "not_measured": dict.fromkeys(("overall", "mean_site", "worst_site"),
                                              "not fitted: the train split does not hold both labels")}
    model = MetadataBaseline(seed=seed).fit(train)
    val = val_rows(frame)
    threshold = threshold_from_probabilities(label_values(val), model.predict_proba(val))
    if split == "val":  # never chosen on the rows it scores
        threshold = Threshold(0.5, "default 0.5: the scored split is val, the threshold's own split", 0, 0, 0)
    scorer = GroupScorer(threshold=threshold.value, selection_rule="none", split=split, n_bootstrap=n_bootstrap,
                         seed=seed, directions=directions)
    scored = score_frame(evaluated, model.predict_proba(evaluated), scorer)
    return {"features": list(METADATA_FEATURES), "fitted_on": "train split of the training domains",
            "n_train": model.n_train, "threshold": threshold.value, "threshold_source": threshold.source, **scored}


def _model_not_measured(entry: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, str]:
    """Reasons for the model-level keys that are null."""
    reasons: dict[str, str] = {}
    if entry["history"] is None:
        reasons["history"] = ("the run's history.jsonl has no evaluation line" if history else
                              "the run has no history.jsonl")
    if entry["val_acc_at_step"] is None:
        reasons["val_acc_at_step"] = (f"the run logged no val_acc at step {entry.get('step')}"
                                      if entry.get("step") is not None else entry["selection"]["reason"])
    if entry.get("step") is None:
        reasons["step"] = entry["selection"]["reason"]
    return reasons


def _baseline_auroc(baseline: dict[str, Any]) -> dict[str, Any]:
    """{site: auroc, overall, mean_site} of the metadata baseline, reasons in ``not_measured`` for null ones."""
    import math

    out: dict[str, Any] = {site: block["auroc"] for site, block in baseline["per_site"].items()}
    out["overall"] = (baseline["overall"] or {}).get("auroc")
    out["mean_site"] = (baseline["mean_site"] or {}).get("auroc")
    reasons = {}
    for key, value in out.items():
        if value is None or not math.isfinite(value):
            block = baseline["per_site"].get(key) or baseline.get(key) or {}
            reasons[key] = (block.get("not_measured") or {}).get("auroc") or baseline.get("note") or "not measured"
    out["not_measured"] = reasons
    return out


def _same_ingest(meta: dict[str, Any], ingest_hash: str | None) -> bool:
    """Whether the scored ingest is the model's training ingest (same cache inputs hash)."""
    from pipeline.compat import model_profile

    profile, _ = model_profile({"meta": meta})
    return profile.ingest_hash is not None and profile.ingest_hash == ingest_hash


def labelled_split(frame, split: str, *, ingest_dir) -> tuple[Any, int]:
    """(labelled rows of ``split``, index reset; number of unlabelled rows skipped). A split without labelled rows
    is a DataError naming the split, its counts and the fix."""
    from pipeline.errors import DataError
    from pipeline.manifest import split_rows
    from pipeline.shortcuts import labelled_mask

    rows = split_rows(frame, split, stage="evaluate", where=ingest_dir)
    known = labelled_mask(rows)
    if not known.any():
        raise DataError(
            f"evaluate: split {split!r} must hold labelled rows to be scored, got {len(rows)} rows, 0 labelled "
            f"({ingest_dir}). Add labels for these images (metadata CSV) and re-ingest, or evaluate another split "
            "with --split; `cxr-fishr audit` still runs the label-free checks on it.")
    return rows[known].reset_index(drop=True), int((~known).sum())


def run(
    *,
    model_dirs: Sequence[str | Path],
    ingest_dir: str | Path,
    out: str | Path,
    split: str = "test",
    names: Sequence[str] | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    last_k: int = 5,
    include_selected: bool = True,
    batch_size: int = 64,
) -> EvaluateResult:
    """Score every model (and its other selected checkpoints) on ``split`` of ``ingest_dir``; write into ``out``."""
    from tqdm.auto import tqdm

    from pipeline.cache import ImageCache
    from pipeline.compat import check_models_compat
    from pipeline.data.inference import predict_proba
    from pipeline.decision_threshold import model_threshold
    from pipeline.errors import ConfigError
    from pipeline.evaluate.history import aggregate_models, summarise_history, value_at_step
    from pipeline.evaluate.samples import separation_warnings, split_warnings
    from pipeline.evaluate.scoring import GroupScorer, is_constant, score_frame
    from pipeline.evaluate.selection_facts import constant_at_selection, with_constant_fact
    from pipeline.evaluate.table import metrics_csv
    from pipeline.manifest import read_manifest
    from pipeline.runs import collect_models, read_history
    from pipeline.shortcuts import (
        estimate_directions,
        headline_attribute,
        shortcut_attributes,
        skipped_attribute_warning,
    )
    from pipeline.stage import StageRecord, to_jsonable, write_json_atomic, write_text_atomic

    if split not in SPLIT_CHOICES:
        raise ConfigError(f"evaluate: split must be one of {list(SPLIT_CHOICES)}, got {split!r}.")
    if n_bootstrap < 0 or batch_size < 1 or last_k < 1:
        raise ConfigError(
            f"evaluate: n_bootstrap must be >= 0, batch_size >= 1 and last_k >= 1, got {n_bootstrap}, "
            f"{batch_size}, {last_k}."
        )
    out = Path(out)
    frame = read_manifest(ingest_dir)
    cache = ImageCache.open(ingest_dir)
    evaluated, n_unlabelled = labelled_split(frame, split, ingest_dir=ingest_dir)
    attributes, attribute_notes = shortcut_attributes(ingest_dir, frame)
    directions = estimate_directions(frame, attributes)
    conflict_attribute, conflict_reason = headline_attribute(directions)
    attribute_warning = skipped_attribute_warning(directions)
    entries = collect_models(model_dirs, names, include_selected=include_selected)
    compat_warnings = check_models_compat(checkpoints=[e.checkpoint for e in entries], ingest_dir=ingest_dir,
                                          stage="evaluate")
    config = {"split": split, "n_bootstrap": n_bootstrap, "seed": seed, "last_k": last_k,
              "include_selected": include_selected, "batch_size": batch_size}
    inputs = {"ingest": Path(ingest_dir) / "manifest.parquet",
              **{f"model:{e.name}": e.checkpoint for e in entries}}
    with StageRecord("evaluate", out, config=config, seed=seed, inputs=inputs) as record:
        models: dict[str, Any] = {}
        threshold_warnings: set[str] = set()
        for entry in tqdm(entries, desc="evaluate", leave=False):
            network, _, _ = entry.load()
            chosen = model_threshold(network=network, images=cache.images, manifest=frame, meta=entry.meta,
                                     ingest_hash=cache.info.get("inputs_hash"), split=split, batch_size=batch_size)
            threshold, source = chosen.value, chosen.source
            if chosen.warning:
                threshold_warnings.add(f"{entry.name}: {chosen.warning}")
            prob = predict_proba(network, cache.images, evaluated["cache_index"].to_numpy(), batch_size)
            scorer = GroupScorer(threshold=threshold, selection_rule=entry.selection_rule, split=split,
                                 n_bootstrap=n_bootstrap, seed=seed, directions=directions)
            history = read_history(entry.model_dir)
            described = entry.describe()
            same_ingest = _same_ingest(entry.meta, cache.info.get("inputs_hash"))
            fact = constant_at_selection(selection=described["selection"], meta=entry.meta, frame=frame,
                                         same_ingest=same_ingest)
            described["selection"] = with_constant_fact(described["selection"], fact, weights_step=entry.step)
            constant_here = is_constant(prob >= threshold)
            models[entry.name] = {
                **described,
                "split": split,
                "threshold": threshold,
                "threshold_source": source,
                "threshold_set": chosen.describe(),
                "n_unlabelled_skipped": n_unlabelled,
                "protocol": f"selection={entry.selection_rule}"
                            + ("" if entry.selection.get("selected", True) else " (no checkpoint selected)")
                            + f"; split={split}; threshold={source}",
                # the scored predictions on this split at this threshold only; train's own check (another cut-off,
                # another set) is selection.constant_at_selection
                "constant_predictor": constant_here,
                "constant_on_split": constant_here,
                **score_frame(evaluated, prob, scorer),
                "history": summarise_history(history, last_k),  # the run's last evaluations
                # training-domain validation accuracy of this very checkpoint (the report's "training sites")
                "val_acc_at_step": value_at_step(history, described["step"], "val_acc"),
            }
            models[entry.name]["not_measured"] = _model_not_measured(models[entry.name], history)
        baseline = _baseline(frame, evaluated, split=split, n_bootstrap=n_bootstrap, seed=seed, directions=directions)
        warnings = [*compat_warnings, *split_warnings(manifest=frame, split=split, evaluated=evaluated),
                    *sorted(threshold_warnings),
                    *([attribute_warning] if attribute_warning else []),
                    *[f"{name}: {m['selection']['reason']}" for name, m in models.items()
                      if not m["selection"].get("selected", True)],
                    *separation_warnings(models, split=split)]
        metrics = {
            "schema_version": SCHEMA_VERSION,
            "stage": "evaluate",
            "split": split,
            "ingest_dir": str(Path(ingest_dir).resolve()),  # absolute: the report may run from elsewhere
            # the cohort's identity (cache inputs hash): the report compares it with audit's and a sweep's
            "ingest_hash": cache.info.get("inputs_hash"),
            "sites": sorted(evaluated["site"].astype(str).unique()),
            "groups": sorted((evaluated["site"].astype(str) + "|" + evaluated["position"].astype(str)).unique()),
            "shortcut_attribute": conflict_attribute,  # the headline conflict/aligned attribute (or None)
            "conflict_attribute": conflict_attribute,
            "conflict_attribute_not_measured": conflict_reason,
            "shortcut_attributes": attributes,
            "shortcut_directions": {a: d.describe() for a, d in directions.items()},
            "shortcut_notes": attribute_notes,
            "n_images": int(len(evaluated)),
            "n_unlabelled_skipped": n_unlabelled,
            "warnings": warnings,
            "n_bootstrap": n_bootstrap,
            "bootstrap_seed": seed,
            "ece_bins": 15,
            "models": models,
            "aggregates": aggregate_models(models),
            "metadata_baseline": baseline,
            "metadata_baseline_auroc": _baseline_auroc(baseline),
        }
        metrics = to_jsonable(metrics)  # the returned dict is the file's content: None (not NaN) where unmeasured
        metrics_path = out / "metrics.json"
        write_json_atomic(metrics_path, metrics)
        write_text_atomic(out / "metrics.csv", metrics_csv(metrics))
        record.extra["models"] = list(models)
        record.extra["n_images"] = int(len(evaluated))
        record.extra["n_unlabelled_skipped"] = n_unlabelled
    return EvaluateResult(out=out, metrics_path=metrics_path, metrics=metrics)
