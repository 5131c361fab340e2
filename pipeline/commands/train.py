"""`cxr-fishr train INGEST_DIR --config configs/train/<algo>.yaml --out RUN [--resume] [--nproc N]` (or a sweep)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from pipeline.train.config import TrainConfig


def train_command(
    ingest_dir: Path = typer.Argument(..., help="An ingest output directory (manifest.parquet + cache/)."),
    config: Path = typer.Option(Path("configs/train/erm.yaml"), "--config", help="Training config (YAML)."),
    out: Path = typer.Option(..., "--out", help="Run directory to write (a sweep: its root)."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out from its last checkpoint."),
    steps: int = typer.Option(None, "--steps", help="Override the config's number of steps."),
    seed: int = typer.Option(None, "--seed", help="Override the config's seed."),
    device: str = typer.Option(None, "--device", help="auto, cpu or cuda (overrides the config)."),
    nproc: int = typer.Option(1, "--nproc", help="Data-parallel processes on this machine (launches torchrun; "
                                                 "gloo on CPU, NCCL on GPUs, one GPU each)."),
    sweep: int = typer.Option(0, "--sweep", help="Hparam search: number of hparam draws (draw 0 = the config's)."),
    seeds: int = typer.Option(1, "--seeds", help="Sweep: seeds per hparam draw."),
    leave_one_out: bool = typer.Option(False, "--leave-one-out",
                                       help="Sweep: also train with each training domain held out (LODO selection)."),
    leave_one_hospital_out: bool = typer.Option(
        False, "--leave-one-hospital-out",
        help="Sweep: every training hospital with enough labelled images is the test hospital in turn."),
    workers: int = typer.Option(1, "--workers", help="Sweep, local engine: parallel runs (one torch thread each)."),
    engine: str = typer.Option("local", "--engine", help="Sweep engine: local (process pool) or ray."),
    address: str = typer.Option(None, "--address", help="Ray: 'auto' or HOST:PORT of a running cluster "
                                                        "(default: a local Ray started for the sweep)."),
    cpus_per_run: float = typer.Option(1.0, "--cpus-per-run", help="Ray: CPUs reserved per run."),
    gpus_per_run: float = typer.Option(0.0, "--gpus-per-run", help="Ray: GPUs reserved per run."),
) -> None:
    """Train a domain-generalisation algorithm (or sweep its hparams) on an ingest directory."""
    from pipeline.errors import ConfigError
    from pipeline.train import load_train_config

    _check_flags(steps=steps, seed=seed, device=device, sweep=sweep, seeds=seeds, workers=workers,
                 cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run)
    cfg = load_train_config(config, {"steps": steps, "seed": seed, "device": device})
    is_sweep = sweep or seeds > 1 or leave_one_out or leave_one_hospital_out
    if nproc < 1 or (nproc > 1 and is_sweep):
        raise ConfigError(f"train: --nproc must be >= 1 and only for a single run (a sweep parallelises runs with "
                          f"--workers or --engine ray), got {nproc}{' with a sweep' if is_sweep else ''}.")
    if is_sweep:
        _sweep(ingest_dir, cfg, out, n_hparams=max(sweep, 1), seeds=seeds, leave_one_out=leave_one_out,
               leave_one_hospital_out=leave_one_hospital_out, workers=workers, engine=engine, address=address,
               cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run)
        return
    if nproc > 1 and "WORLD_SIZE" not in os.environ:
        from pipeline.train.distributed import DistInfo, check_shards

        # refused here, before torchrun starts N processes that would each fail the same way
        check_shards(batch_size=cfg.typed_hparams().batch_size, algorithm=cfg.algorithm,
                     info=DistInfo(world_size=nproc))
        raise typer.Exit(_torchrun(nproc, ingest_dir, config, out, resume, steps, seed, device))
    _single_run(ingest_dir, cfg, out, resume=resume)


def _check_flags(*, steps: int | None, seed: int | None, device: str | None, sweep: int, seeds: int, workers: int,
                 cpus_per_run: float, gpus_per_run: float) -> None:
    """ConfigError naming the first invalid flag and its valid values, before the config or the ingest is read."""
    from pipeline.commands.flags import check_config_flags, check_flag
    from pipeline.train.config import TrainConfig

    check_config_flags("train", TrainConfig, {"steps": ("--steps", steps), "seed": ("--seed", seed),
                                              "device": ("--device", device)})
    check_flag("train", "--sweep", sweep, ok=sweep >= 0, must="be >= 0 (hparam draws; 0: no hparam search)")
    check_flag("train", "--seeds", seeds, ok=seeds >= 1, must="be >= 1 (seeds per hparam draw)")
    check_flag("train", "--workers", workers, ok=workers >= 1, must="be >= 1 (parallel runs of a sweep)")
    check_flag("train", "--cpus-per-run", cpus_per_run, ok=cpus_per_run > 0, must="be > 0 (CPUs Ray reserves per run)")
    check_flag("train", "--gpus-per-run", gpus_per_run, ok=gpus_per_run >= 0,
               must="be >= 0 (GPUs Ray reserves per run)")


def _sweep(ingest_dir: Path, cfg: TrainConfig, out: Path, *, n_hparams: int, seeds: int, leave_one_out: bool,
           leave_one_hospital_out: bool, workers: int, engine: str, address: str | None, cpus_per_run: float,
           gpus_per_run: float) -> None:
    """Run the sweep (pipeline/train/sweep.py run_sweep) and print what ran, what failed and the warnings."""
    from pipeline.train.sweep import run_sweep

    result = run_sweep(ingest_dir=ingest_dir, config=cfg, out=out, n_hparams=n_hparams, seeds=seeds,
                       leave_one_out=leave_one_out, workers=workers, leave_one_hospital_out=leave_one_hospital_out,
                       engine=engine, address=address, cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run)
    typer.echo(f"train: sweep ran {result.ran} runs, skipped {result.skipped} done, {len(result.failed)} failed "
               f"-> {result.out}")
    for path, message in result.failed.items():
        typer.echo(f"  failed {path}: {message}", err=True)
    for warning in result.warnings or []:
        typer.echo(f"  warning: {warning}", err=True)


def _single_run(ingest_dir: Path, cfg: TrainConfig, out: Path, *, resume: bool) -> None:
    """Train one run (this process, or one rank under torchrun) and, on rank 0, print the selected step."""
    from pipeline.train import run

    result = run(ingest_dir=ingest_dir, config=cfg, out=out, resume=resume)
    if int(os.environ.get("RANK", "0")) != 0:
        return  # rank 0 reports
    chosen = result.selection.get(cfg.selection, {})
    if chosen.get("step") is None:  # never "selected step None": say why nothing was selected
        typer.echo(f"train: {cfg.algorithm} {result.final_step} steps; {cfg.selection}: no checkpoint selected: "
                   f"{chosen.get('reason', 'no evaluation scored this rule')}; {result.model_path} holds the final "
                   "weights" + (", flagged constant_predictor" if chosen.get("constant_predictor") else ""))
    else:
        typer.echo(f"train: {cfg.algorithm} {result.final_step} steps; {cfg.selection} selected step "
                   f"{chosen['step']} (score {chosen['score']:.4g}) -> {result.model_path}")


def _torchrun(nproc: int, ingest_dir: Path, config: Path, out: Path, resume: bool, steps: int | None,
              seed: int | None, device: str | None) -> int:
    """``torchrun --standalone --nproc_per_node N -m pipeline.train ...`` with the same options; its exit code."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(nproc),
               "-m", "pipeline.train", str(ingest_dir), "--config", str(config), "--out", str(out)]
    for flag, value in (("--steps", steps), ("--seed", seed), ("--device", device)):
        command += [flag, str(value)] if value is not None else []
    command += ["--resume"] if resume else []
    return subprocess.call(command)
