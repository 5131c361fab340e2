"""`evaluate`: per-site and per site|position metrics of trained models on a manifest split (METRICS.md).

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


def _threshold(network, images, frame, batch_size: int) -> tuple[float, str]:
    from pipeline.evaluate.inputs import predict_proba
    from pipeline.evaluate.metrics import balanced_threshold

    val = frame[frame["split"] == "val"]
    if len(val) == 0 or val["label"].nunique() < 2:
        return 0.5, "default 0.5 (no val split with both labels)"
    prob = predict_proba(network, images, val["cache_index"].to_numpy(), batch_size)
    return balanced_threshold(val["label"].to_numpy(), prob), "val (training domains)"


def _baseline(frame, evaluated, *, split: str, n_bootstrap: int, seed: int) -> dict[str, Any]:
    from pipeline.evaluate.baseline import METADATA_FEATURES, MetadataBaseline
    from pipeline.evaluate.metrics import balanced_threshold
    from pipeline.evaluate.scoring import GroupScorer, score_frame

    train = frame[frame["split"] == "train"]
    val = frame[frame["split"] == "val"]
    if train["label"].nunique() < 2:  # nothing to fit: say so instead of failing the models' evaluation
        return {"features": list(METADATA_FEATURES), "fitted_on": "train split of the training domains",
                "n_train": int(len(train)), "note": "not fitted: the train split does not hold both labels",
                "overall": None, "per_site": {}, "per_group": {}, "mean_site": None, "worst_site": None}
    model = MetadataBaseline(seed=seed).fit(train)
    if len(val) and val["label"].nunique() == 2:
        threshold, source = balanced_threshold(val["label"].to_numpy(), model.predict_proba(val)), "val (training domains)"
    else:
        threshold, source = 0.5, "default 0.5 (no val split with both labels)"
    scorer = GroupScorer(threshold=threshold, selection_rule="none", split=split, n_bootstrap=n_bootstrap, seed=seed)
    scored = score_frame(evaluated, model.predict_proba(evaluated), scorer)
    return {"features": list(METADATA_FEATURES), "fitted_on": "train split of the training domains",
            "n_train": model.n_train, "threshold": threshold, "threshold_source": source, **scored}


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
    from pipeline.errors import ConfigError
    from pipeline.evaluate.history import aggregate_models, summarise_history, value_at_step
    from pipeline.evaluate.inputs import predict_proba
    from pipeline.evaluate.models import collect_models, read_history
    from pipeline.evaluate.scoring import GroupScorer, score_frame
    from pipeline.evaluate.table import metrics_csv
    from pipeline.manifest import read_manifest, split_rows
    from pipeline.stage import StageRecord, write_json_atomic, write_text_atomic

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
    evaluated = split_rows(frame, split, stage="evaluate", where=ingest_dir)
    entries = collect_models(model_dirs, names, include_selected=include_selected)
    config = {"split": split, "n_bootstrap": n_bootstrap, "seed": seed, "last_k": last_k,
              "include_selected": include_selected, "batch_size": batch_size}
    inputs = {"ingest": Path(ingest_dir) / "manifest.parquet",
              **{f"model:{e.name}": e.checkpoint for e in entries}}
    with StageRecord("evaluate", out, config=config, seed=seed, inputs=inputs) as record:
        models: dict[str, Any] = {}
        for entry in tqdm(entries, desc="evaluate", leave=False):
            network, _, _ = entry.load()
            threshold, source = _threshold(network, cache.images, frame, batch_size)
            prob = predict_proba(network, cache.images, evaluated["cache_index"].to_numpy(), batch_size)
            scorer = GroupScorer(threshold=threshold, selection_rule=entry.selection_rule, split=split,
                                 n_bootstrap=n_bootstrap, seed=seed)
            predicted = prob >= threshold
            history = read_history(entry.model_dir)
            models[entry.name] = {
                **entry.describe(),
                "split": split,
                "threshold": threshold,
                "threshold_source": source,
                "protocol": f"selection={entry.selection_rule}; split={split}; threshold={source}",
                "constant_predictor": bool(predicted.all() or not predicted.any()),
                **score_frame(evaluated, prob, scorer),
                "history": summarise_history(history, last_k),  # the run's last evaluations
                # training-domain validation accuracy of this very checkpoint (the report's "training sites")
                "val_acc_at_step": value_at_step(history, entry.step, "val_acc"),
            }
        baseline = _baseline(frame, evaluated, split=split, n_bootstrap=n_bootstrap, seed=seed)
        metrics = {
            "schema_version": SCHEMA_VERSION,
            "stage": "evaluate",
            "split": split,
            "ingest_dir": str(ingest_dir),
            "sites": sorted(evaluated["site"].astype(str).unique()),
            "groups": sorted((evaluated["site"].astype(str) + "|" + evaluated["position"].astype(str)).unique()),
            "shortcut_attribute": "position",
            "n_bootstrap": n_bootstrap,
            "bootstrap_seed": seed,
            "ece_bins": 15,
            "models": models,
            "aggregates": aggregate_models(models),
            "metadata_baseline": baseline,
            "metadata_baseline_auroc": {
                **{site: block["auroc"] for site, block in baseline["per_site"].items()},
                "overall": (baseline["overall"] or {}).get("auroc"),
                "mean_site": (baseline["mean_site"] or {}).get("auroc"),
            },
        }
        metrics_path = out / "metrics.json"
        write_json_atomic(metrics_path, metrics)
        write_text_atomic(out / "metrics.csv", metrics_csv(metrics))
        record.extra["models"] = list(models)
        record.extra["n_images"] = int(len(evaluated))
    return EvaluateResult(out=out, metrics_path=metrics_path, metrics=metrics)
