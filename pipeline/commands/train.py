"""`cxr-fishr train INGEST_DIR --config configs/train/<algo>.yaml --out RUN [--resume]` (or a sweep)."""

from __future__ import annotations

from pathlib import Path

import typer


def train_command(
    ingest_dir: Path = typer.Argument(..., help="An ingest output directory (manifest.parquet + cache/)."),
    config: Path = typer.Option(Path("configs/train/erm.yaml"), "--config", help="Training config (YAML)."),
    out: Path = typer.Option(..., "--out", help="Run directory to write (a sweep: its root)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    steps: int = typer.Option(None, "--steps", help="Override the config's number of steps."),
    seed: int = typer.Option(None, "--seed", help="Override the config's seed."),
    device: str = typer.Option(None, "--device", help="auto, cpu or cuda (overrides the config)."),
    sweep: int = typer.Option(0, "--sweep", help="Hparam search: number of hparam draws (draw 0 = the config's)."),
    seeds: int = typer.Option(1, "--seeds", help="Sweep: seeds per hparam draw."),
    leave_one_out: bool = typer.Option(False, "--leave-one-out",
                                       help="Sweep: also train with each training domain held out (LODO selection)."),
    workers: int = typer.Option(1, "--workers", help="Sweep: parallel runs (one torch thread each)."),
) -> None:
    """Train a domain-generalisation algorithm (or sweep its hparams) on an ingest directory."""
    from pipeline.train import load_train_config, run

    cfg = load_train_config(config, {"steps": steps, "seed": seed, "device": device})
    if sweep or seeds > 1 or leave_one_out:
        from pipeline.train.sweep import run_sweep

        result = run_sweep(ingest_dir=ingest_dir, config=cfg, out=out, n_hparams=max(sweep, 1), seeds=seeds,
                           leave_one_out=leave_one_out, workers=workers)
        typer.echo(f"train: sweep ran {result.ran} runs, skipped {result.skipped} done, {len(result.failed)} failed "
                   f"-> {result.out}")
        for path, message in result.failed.items():
            typer.echo(f"  failed {path}: {message}", err=True)
        return
    result = run(ingest_dir=ingest_dir, config=cfg, out=out, resume=resume)
    chosen = result.selection.get(cfg.selection, {})
    typer.echo(f"train: {cfg.algorithm} {result.final_step} steps; {cfg.selection} selected step {chosen.get('step')} "
               f"(score {chosen.get('score')}) -> {result.model_path}")
