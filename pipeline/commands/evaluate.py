"""`cxr-fishr evaluate RUN [RUN ...] --ingest INGEST --out EVAL`: per-site metrics of trained models."""

from __future__ import annotations

from pathlib import Path

import typer


def evaluate_command(
    model_dirs: list[Path] = typer.Argument(..., help="Run directories (each with model.pt) or model .pt files."),
    ingest: Path = typer.Option(..., "--ingest", help="Ingest directory (manifest.parquet + cache/)."),
    out: Path = typer.Option(..., "--out", help="Output directory for metrics.json, metrics.csv, stage.json."),
    split: str = typer.Option("test", "--split", help="Manifest split to evaluate: train, val, ood_val or test."),
    name: list[str] | None = typer.Option(None, "--name", help="Model name; repeat once per run, in order: --name A "
                                           "--name B (default: dir names)."),
    n_bootstrap: int = typer.Option(1000, "--n-bootstrap", help="Bootstrap resamples for the AUROC intervals."),
    seed: int = typer.Option(0, "--seed", help="Seed of the bootstrap and the metadata baseline."),
    last_k: int = typer.Option(5, "--last-k", help="Average history.jsonl figures over the last K evaluations."),
    selected: bool = typer.Option(True, "--selected/--no-selected",
                                  help="Also score RUN/selected/<rule>.pt checkpoints other than model.pt's."),
    batch_size: int = typer.Option(64, "--batch-size", help="Images per forward pass."),
) -> None:
    """Per-site and per site x position metrics (accuracy, balanced accuracy, AUROC with bootstrap CI, ECE,
    conflict/aligned accuracy), mean and worst site, and the metadata-only baseline, for every model."""
    from pipeline.commands.flags import check_flag
    from pipeline.manifest import SPLITS

    check_flag("evaluate", "--split", split, ok=split in SPLITS, must=f"be one of {', '.join(SPLITS)}")
    check_flag("evaluate", "--n-bootstrap", n_bootstrap, ok=n_bootstrap >= 0, must="be >= 0 (0: no AUROC interval)")
    check_flag("evaluate", "--last-k", last_k, ok=last_k >= 1, must="be >= 1")
    check_flag("evaluate", "--batch-size", batch_size, ok=batch_size >= 1, must="be >= 1")
    from pipeline.evaluate import run

    result = run(model_dirs=model_dirs, ingest_dir=ingest, out=out, split=split, names=name or None,
                 n_bootstrap=n_bootstrap, seed=seed, last_k=last_k, include_selected=selected,
                 batch_size=batch_size)
    metrics = result.metrics
    typer.echo(f"evaluate: wrote {result.metrics_path} ({metrics['n_images']} labelled {metrics['split']} images; "
               f"{metrics['n_unlabelled_skipped']} unlabelled skipped)")
    attribute = metrics.get("conflict_attribute")
    conflict_what = f"conflict accuracy ({attribute})" if attribute else "conflict accuracy"
    for model_name, entry in metrics["models"].items():
        mean = entry["mean_site"]
        selection = entry.get("selection") or {}
        rule = entry["selection_rule"] + ("" if selection.get("selected", True) else ", no checkpoint selected")
        conflict = (_num(mean["conflict_accuracy"], (mean.get("not_measured") or {}).get("conflict_accuracy"))
                    if attribute else
                    f"not measured ({metrics.get('conflict_attribute_not_measured')})")
        why = mean.get("not_measured") or {}
        typer.echo(f"  {model_name} [{rule}]: mean-site accuracy {_num(mean['accuracy'], why.get('accuracy'))} "
                   f"(majority {_num(mean['majority_accuracy'], why.get('majority_accuracy'))}), {conflict_what} "
                   f"{conflict}, AUROC {_num(mean['auroc'], why.get('auroc'))}, threshold {_num(entry['threshold'])} ({entry['threshold_source']})"
                   + (" CONSTANT PREDICTOR" if entry["constant_predictor"] else ""))
    for warning in metrics["warnings"]:
        typer.echo(f"  warning: {warning}")


def _num(value: float | None, reason: str | None = None) -> str:
    """A number for the console; a missing one reads 'not measured (<the reason evaluate recorded>)', never 0 or
    nan."""
    if value is None:
        return f"not measured ({reason or 'no reason recorded'})"
    return f"{value:.3f}"
