"""`evaluate`: per-site and per site|position metrics of trained models on a manifest split (docs/design/metrics.md).

``run(model_dirs=..., ingest_dir=..., out=...)`` writes ``metrics.json``, ``metrics.csv`` and ``stage.json``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.artefacts.metrics import MetricsFile
    from pipeline.runs import ModelEntry

SPLIT_CHOICES = ("train", "val", "ood_val", "test")


@dataclass(frozen=True)
class EvaluateResult:
    """What ``run`` wrote: ``file`` is metrics.json as its typed model (pipeline/artefacts/metrics.py)."""

    out: Path
    metrics_path: Path
    file: MetricsFile

    @cached_property
    def metrics(self) -> dict[str, Any]:
        """metrics.json's content as a dict (for callers that index it: the CLI and older tests)."""
        return self.file.to_json_dict()


@dataclass(frozen=True)
class _Cohort:
    """The scored split of one ingest and its shortcut attributes (pipeline/protocol/shortcuts.py)."""

    ingest_dir: Path
    frame: Any  # the whole manifest (pd.DataFrame)
    cache: Any  # pipeline.cache.ImageCache
    evaluated: Any  # the labelled rows of the split, index reset (pd.DataFrame)
    n_unlabelled: int
    attributes: list[str]
    attribute_notes: list[str]
    directions: dict[str, Any]  # attribute -> ShortcutDirection
    conflict_attribute: str | None
    conflict_reason: str | None
    attribute_warning: str | None

    @property
    def ingest_hash(self) -> str | None:
        return self.cache.info.get("inputs_hash")


@dataclass(frozen=True)
class _Settings:
    split: str
    n_bootstrap: int
    seed: int
    last_k: int
    batch_size: int


def _baseline(frame, evaluated, *, split: str, n_bootstrap: int, seed: int, directions) -> dict[str, Any]:
    """The metadata-only logistic regression, fitted on the labelled train rows and scored like a model."""
    from pipeline.decision_threshold import Threshold, threshold_from_probabilities, val_rows
    from pipeline.evaluate.baseline import METADATA_FEATURES, MetadataBaseline
    from pipeline.evaluate.scoring import GroupScorer, score_frame
    from pipeline.protocol.shortcuts import label_values, labelled_mask

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
        threshold = Threshold(0.5, "the 0.5 default, as the scored split is val, the threshold's own split", 0, 0, 0)
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
    from pipeline.protocol.shortcuts import labelled_mask

    rows = split_rows(frame, split, stage="evaluate", where=ingest_dir)
    known = labelled_mask(rows)
    if not known.any():
        raise DataError(
            f"evaluate: split {split!r} must hold labelled rows to be scored, got {len(rows)} rows, 0 labelled "
            f"({ingest_dir}). Add labels for these images (metadata CSV) and re-ingest, or evaluate another split "
            "with --split; `cxr-fishr audit` still runs the label-free checks on it.")
    return rows[known].reset_index(drop=True), int((~known).sum())


def _check_arguments(*, split: str, n_bootstrap: int, batch_size: int, last_k: int) -> None:
    from pipeline.errors import ConfigError

    if split not in SPLIT_CHOICES:
        raise ConfigError(f"evaluate: split must be one of {list(SPLIT_CHOICES)}, got {split!r}.")
    if n_bootstrap < 0 or batch_size < 1 or last_k < 1:
        raise ConfigError(
            f"evaluate: n_bootstrap must be >= 0, batch_size >= 1 and last_k >= 1, got {n_bootstrap}, "
            f"{batch_size}, {last_k}."
        )


def _open_cohort(ingest_dir: str | Path, split: str) -> _Cohort:
    """The manifest, cache and labelled rows of ``split``, and the shortcut attributes with their directions."""
    from pipeline.cache import ImageCache
    from pipeline.manifest import read_manifest
    from pipeline.protocol.shortcuts import (
        estimate_directions,
        headline_attribute,
        shortcut_attributes,
        skipped_attribute_warning,
    )

    frame = read_manifest(ingest_dir)
    evaluated, n_unlabelled = labelled_split(frame, split, ingest_dir=ingest_dir)
    attributes, attribute_notes = shortcut_attributes(ingest_dir, frame)
    directions = estimate_directions(frame, attributes)
    conflict_attribute, conflict_reason = headline_attribute(directions)
    return _Cohort(ingest_dir=Path(ingest_dir), frame=frame, cache=ImageCache.open(ingest_dir), evaluated=evaluated,
                   n_unlabelled=n_unlabelled, attributes=attributes, attribute_notes=attribute_notes,
                   directions=directions, conflict_attribute=conflict_attribute, conflict_reason=conflict_reason,
                   attribute_warning=skipped_attribute_warning(directions))


def _score_model(entry: ModelEntry, cohort: _Cohort, settings: _Settings) -> tuple[dict[str, Any], str | None]:
    """(the model's metrics.json entry, its threshold warning or None) for one checkpoint."""
    from pipeline.artefacts.history import read_history
    from pipeline.artefacts.model_meta import ModelMeta
    from pipeline.artefacts.selection import SelectionTruth
    from pipeline.data.inference import predict_proba
    from pipeline.decision_threshold import model_threshold
    from pipeline.evaluate.history import summarise_history, value_at_step
    from pipeline.evaluate.scoring import GroupScorer, is_constant, score_frame
    from pipeline.evaluate.selection_facts import constant_at_selection, with_constant_fact

    split = settings.split
    network, _, _ = entry.load()
    chosen = model_threshold(network=network, images=cohort.cache.images, manifest=cohort.frame, meta=entry.meta,
                             ingest_hash=cohort.ingest_hash, split=split, batch_size=settings.batch_size)
    prob = predict_proba(network, cohort.cache.images, cohort.evaluated["cache_index"].to_numpy(),
                         settings.batch_size)
    scorer = GroupScorer(threshold=chosen.value, selection_rule=entry.selection_rule, split=split,
                         n_bootstrap=settings.n_bootstrap, seed=settings.seed, directions=cohort.directions)
    history = read_history(entry.model_dir)
    described = entry.describe()
    truth = SelectionTruth.model_validate(described["selection"])
    fact = constant_at_selection(selection=truth, meta=ModelMeta.from_meta(entry.meta, where=str(entry.checkpoint)),
                                 frame=cohort.frame, same_ingest=_same_ingest(entry.meta, cohort.ingest_hash))
    described["selection"] = with_constant_fact(truth, fact, weights_step=entry.step).model_dump(mode="json")
    constant_here = is_constant(prob >= chosen.value)
    model = {
        **described,
        "split": split,
        "threshold": chosen.value,
        "threshold_source": chosen.source,
        "threshold_set": chosen.describe(),
        "n_unlabelled_skipped": cohort.n_unlabelled,
        "protocol": f"selection={entry.selection_rule}"
                    + ("" if entry.selection.get("selected", True) else " (no checkpoint selected)")
                    + f"; split={split}; threshold={chosen.source}",
        # the scored predictions on this split at this threshold only; train's own check (another cut-off,
        # another set) is selection.constant_at_selection
        "constant_predictor": constant_here,
        "constant_on_split": constant_here,
        **score_frame(cohort.evaluated, prob, scorer),
        "history": summarise_history(history, settings.last_k),  # the run's last evaluations
        # training-domain validation accuracy of this very checkpoint (the report's "training sites")
        "val_acc_at_step": value_at_step(history, described["step"], "val_acc"),
    }
    model["not_measured"] = _model_not_measured(model, history)
    return model, (f"{entry.name}: {chosen.warning}" if chosen.warning else None)


def _warnings(*, compat: list[str], cohort: _Cohort, split: str, threshold_warnings: set[str],
              models: dict[str, dict[str, Any]]) -> list[str]:
    """Every warning of metrics.json, in its order: compatibility, small sets, thresholds, attributes, unselected
    checkpoints, sites that cannot rank the models."""
    from pipeline.evaluate.samples import separation_warnings, split_warnings

    return [*compat, *split_warnings(manifest=cohort.frame, split=split, evaluated=cohort.evaluated),
            *sorted(threshold_warnings),
            *([cohort.attribute_warning] if cohort.attribute_warning else []),
            *[f"{name}: {m['selection']['reason']}" for name, m in models.items()
              if not m["selection"].get("selected", True)],
            *separation_warnings(models, split=split)]


def _metrics_file(*, cohort: _Cohort, settings: _Settings, models: dict[str, dict[str, Any]],
                  baseline: dict[str, Any], warnings: list[str]) -> MetricsFile:
    """metrics.json as its typed model (None, never NaN, where a number is unmeasured)."""
    from pipeline.artefacts.metrics import MetricsFile
    from pipeline.evaluate.history import aggregate_models
    from pipeline.evaluate.scoring import GroupScorer
    from pipeline.stage import to_jsonable

    evaluated = cohort.evaluated
    metrics = {
        "schema_version": MetricsFile.SCHEMA_VERSION,
        "stage": "evaluate",
        "split": settings.split,
        "ingest_dir": str(cohort.ingest_dir.resolve()),  # absolute: the report may run from elsewhere
        # the cohort's identity (cache inputs hash): the report compares it with audit's and a sweep's
        "ingest_hash": cohort.ingest_hash,
        "sites": sorted(evaluated["site"].astype(str).unique()),
        "groups": sorted((evaluated["site"].astype(str) + "|" + evaluated["position"].astype(str)).unique()),
        "shortcut_attribute": cohort.conflict_attribute,  # the headline conflict/aligned attribute (or None)
        "conflict_attribute": cohort.conflict_attribute,
        "conflict_attribute_not_measured": cohort.conflict_reason,
        "shortcut_attributes": cohort.attributes,
        "shortcut_directions": {a: d.describe() for a, d in cohort.directions.items()},
        "shortcut_notes": cohort.attribute_notes,
        "n_images": int(len(evaluated)),
        "n_unlabelled_skipped": cohort.n_unlabelled,
        "warnings": warnings,
        "n_bootstrap": settings.n_bootstrap,
        "bootstrap_seed": settings.seed,
        # the bins every model's ECE used: the scorer's own setting (its default, the one run passes)
        "ece_bins": GroupScorer(threshold=0.5, selection_rule="none", split=settings.split).ece.n_bins,
        "models": models,
        "aggregates": aggregate_models(models),
        "metadata_baseline": baseline,
        "metadata_baseline_auroc": _baseline_auroc(baseline),
    }
    return MetricsFile.from_dict(to_jsonable(metrics), where="metrics.json (being written)")


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

    from pipeline.compat import check_models_compat
    from pipeline.evaluate.table import metrics_csv
    from pipeline.runs import collect_models
    from pipeline.stage import StageRecord, write_text_atomic

    _check_arguments(split=split, n_bootstrap=n_bootstrap, batch_size=batch_size, last_k=last_k)
    out = Path(out)
    settings = _Settings(split=split, n_bootstrap=n_bootstrap, seed=seed, last_k=last_k, batch_size=batch_size)
    cohort = _open_cohort(ingest_dir, split)
    entries = collect_models(model_dirs, names, include_selected=include_selected)
    compat_warnings = check_models_compat(checkpoints=[e.checkpoint for e in entries], ingest_dir=ingest_dir,
                                          stage="evaluate", split=split, scored=cohort.evaluated)
    config = {"split": split, "n_bootstrap": n_bootstrap, "seed": seed, "last_k": last_k,
              "include_selected": include_selected, "batch_size": batch_size}
    inputs = {"ingest": Path(ingest_dir) / "manifest.parquet",
              **{f"model:{e.name}": e.checkpoint for e in entries}}
    with StageRecord("evaluate", out, config=config, seed=seed, inputs=inputs) as record:
        models: dict[str, Any] = {}
        threshold_warnings: set[str] = set()
        for entry in tqdm(entries, desc="evaluate", leave=False):
            models[entry.name], warning = _score_model(entry, cohort, settings)
            threshold_warnings |= {warning} if warning else set()
        baseline = _baseline(cohort.frame, cohort.evaluated, split=split, n_bootstrap=n_bootstrap, seed=seed,
                             directions=cohort.directions)
        warnings = _warnings(compat=compat_warnings, cohort=cohort, split=split,
                             threshold_warnings=threshold_warnings, models=models)
        metrics = _metrics_file(cohort=cohort, settings=settings, models=models, baseline=baseline,
                                warnings=warnings)
        metrics_path = metrics.write(out / "metrics.json")
        write_text_atomic(out / "metrics.csv", metrics_csv(metrics.to_json_dict()))
        record.extra["models"] = list(models)
        record.extra["n_images"] = metrics.n_images
        record.extra["n_unlabelled_skipped"] = cohort.n_unlabelled
    return EvaluateResult(out=out, metrics_path=metrics_path, file=metrics)
