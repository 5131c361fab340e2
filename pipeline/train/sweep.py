"""DomainBed-style hparam search: N hparam draws x K seeds (x each held-out training domain for
leave-one-domain-out), one run directory per job named by the hash of its config. Each run is a stage of the stage
runner (``pipeline/stage.py``): its ``stage.json`` carries the run's fingerprint (its config, the ingest directory's
record, the version), so a re-launched sweep skips finished runs, resumes unfinished ones from their checkpoints,
and starts over a run whose ingest directory changed since.

Draw 0 is the config's own hparams; draw d > 0 samples every searchable hparam from DomainBed's distributions
(``HParams.sample(seed_hash(algorithm, d))``) except the ``fixed`` ones (batch size by default), which keep the
config's values. Selection across runs (``selection.json``): per rule, the draw with the best mean score over its
seeds (each run's own checkpoint choice under that rule); leave-one-domain-out averages the held-out-domain score
over seeds and held-out domains and points at the draw's full runs (their training_domain checkpoint). A draw is
eligible under a rule only if every one of its runs selected a checkpoint (none was a constant predictor throughout).

Leave-one-hospital-out (``leave_one_hospital_out``) is a sweep dimension: every training hospital with enough
labelled images is the test hospital in turn (``holdout_domain``: never trained on, scored as ``holdout_acc``); the
selection is then made per test hospital (``selection.json``: {hospital: {rule: choice}}) and
``cxr-fishr results`` tabulates it. Runs go through the one executor (``pipeline/executor.py``): the local process
pool (default; each run's output in ``<out>/logs/<run>.log``) or Ray (``engine="ray"``: one task per run with its
CPUs/GPUs, on a local Ray or the cluster at ``address``); a failed run is reported, never stops the others, and a
relaunch runs only the runs that are not finished under their fingerprint.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pipeline.algorithms import get_algorithm_class
from pipeline.errors import ConfigError, DataError
from pipeline.protocol.across_runs import select_across_runs
from pipeline.protocol.selection import LEAVE_ONE_DOMAIN_OUT as LODO
from pipeline.protocol.selection import OOD_VALIDATION, ORACLE, TRAINING_DOMAIN
from pipeline.seeding import seed_hash
from pipeline.stage import Stage, StageRecord, atomic_path, is_fresh, run_stage, write_json_atomic, write_text_atomic
from pipeline.train.config import TrainConfig

# Settings that change how fast a run goes, never its results: left out of its fingerprint (the run's folder keeps
# its name, the hash of the whole planned config, so existing sweeps keep their folders).
SPEED_ONLY = ("threads",)


@dataclass(frozen=True)
class SweepJob:
    draw: int
    trial_seed: int
    holdout: str | None
    config: TrainConfig
    test_hospital: str | None = None  # leave-one-hospital-out: the hospital held out as this run's test

    @property
    def key(self) -> str:
        text = json.dumps(self.config.model_dump(mode="json"), sort_keys=True)
        return hashlib.md5(text.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class SweepResult:
    out: Path
    selection: dict[str, dict[str, Any]]
    ran: int
    skipped: int
    failed: dict[str, str]
    warnings: list[str] | None = None


def draw_hparams(cfg: TrainConfig, draw: int, fixed: Sequence[str]) -> dict[str, Any]:
    base = cfg.typed_hparams().to_dict()
    if draw == 0:
        return base
    sampled = get_algorithm_class(cfg.algorithm).HPARAMS.sample(seed_hash(cfg.algorithm, draw)).to_dict()
    return {**sampled, **{name: base[name] for name in fixed if name in base}}


def plan_jobs(cfg: TrainConfig, *, n_hparams: int, seeds: int, holdout_domains: Sequence[str] = (),
              fixed: Sequence[str] = ("batch_size",), test_hospitals: Sequence[str] = ()) -> list[SweepJob]:
    """draws x seeds x (the full run and each LODO hold-out), or x each test hospital (leave-one-hospital-out)."""
    if holdout_domains and test_hospitals:
        raise ConfigError("train: sweep must use either leave-one-out (selection) or leave-one-hospital-out (test) "
                          "hold-outs, got both. Drop --leave-one-out or --leave-one-hospital-out.")
    jobs = []
    for draw in range(n_hparams):
        hparams = draw_hparams(cfg, draw, fixed)
        for trial in range(seeds):
            for holdout in (tuple(test_hospitals) or (None, *holdout_domains)):
                update = {"hparams": hparams, "seed": cfg.seed + trial, "holdout_domain": holdout,
                          "threads": cfg.threads or 1}
                config = TrainConfig.model_validate({**cfg.model_dump(), **update})
                jobs.append(SweepJob(draw=draw, trial_seed=trial, holdout=holdout, config=config,
                                     test_hospital=holdout if test_hospitals else None))
    return jobs


def loho_hospitals(ingest_dir: str | Path, cfg: TrainConfig, *, min_labelled: int) -> tuple[list[str], list[str]]:
    """(hospitals, warnings): every training hospital with >= ``min_labelled`` labelled train/val images that
    leaves >= 2 training hospitals; each one left out is a counted warning naming its count. DataError when none."""
    from pipeline.manifest import domain_values, labelled, read_manifest

    frame = read_manifest(ingest_dir)
    rows = labelled(frame[frame["split"].isin(["train", "val"])])
    counts = domain_values(rows, tuple(cfg.domain_columns)).value_counts().to_dict()
    domains = sorted(counts)
    hospitals, warnings = [], []
    for domain in domains:
        if counts[domain] < min_labelled:
            warnings.append(f"train: leave-one-hospital-out skips {domain!r} as a test hospital: "
                            f"{counts[domain]} labelled train/val images, fewer than {min_labelled}.")
        else:
            hospitals.append(domain)
    if len(domains) < 3 or not hospitals:
        raise DataError(f"train: leave-one-hospital-out needs >= 3 training hospitals (2 to train on while one is "
                        f"the test) with >= {min_labelled} labelled images, got {counts} ({ingest_dir}). Ingest "
                        "more sites, or sweep without --leave-one-hospital-out.")
    return hospitals, warnings


def _train_run(out: Path, *, resume: bool, ingest_dir: str, config: dict[str, Any]) -> None:
    """A run's compute step (in a worker process or Ray task): always ``resume=True``, as the folder is named by
    the run's config (a crashed run continues from its checkpoint; the stage runner removed a stale one first)."""
    from pipeline.train import run

    run(ingest_dir=ingest_dir, config=TrainConfig.model_validate(config), out=out, resume=True, progress=False)


def run_stage_of(job: SweepJob, run_dir: Path, ingest_dir: Path, *, threads: int | None = None) -> Stage:
    """The stage declaration of one run: fingerprinted by its config without speed-only settings and by the
    ingest directory (its ``stage.json``); ``threads`` overrides the config's torch threads (Ray: the CPUs)."""
    config = job.config.model_dump(mode="json")
    if threads is not None:
        config["threads"] = threads
    return Stage(name="train", out=run_dir, config={k: v for k, v in config.items() if k not in SPEED_ONLY},
                 inputs={"ingest_dir": ingest_dir}, seed=job.config.seed, resumable=True,
                 compute=functools.partial(_train_run, ingest_dir=str(ingest_dir), config=config))


Engine = Literal["local", "ray"]


def run_sweep(*, ingest_dir: str | Path, config: TrainConfig, out: str | Path, n_hparams: int = 1, seeds: int = 1,
              leave_one_out: bool = False, workers: int = 1, fixed: Sequence[str] = ("batch_size",),
              leave_one_hospital_out: bool = False, engine: Engine = "local", address: str | None = None,
              cpus_per_run: float = 1.0, gpus_per_run: float = 0.0) -> SweepResult:
    """Plan, run (skipping finished runs) and select; ``failed`` maps each failed run directory to its error."""
    from pipeline.executor import Job, run_jobs
    from pipeline.train.domains import resolve_domain_columns, training_domains

    out, ingest_dir = Path(out), Path(ingest_dir).resolve()
    config = resolve_domain_columns(ingest_dir, config)  # every run of the sweep gets the manifest's spelling
    if engine not in ("local", "ray"):
        raise ConfigError(f"train: --engine must be 'local' or 'ray', got {engine!r}.")
    holdouts = training_domains(ingest_dir, config) if leave_one_out else []
    hospitals, warnings = [], []
    if leave_one_hospital_out:
        # a test hospital needs at least one evaluation batch's worth of labelled images to be scored at all
        hospitals, warnings = loho_hospitals(ingest_dir, config, min_labelled=config.typed_hparams().batch_size)
    jobs = plan_jobs(config, n_hparams=n_hparams, seeds=seeds, holdout_domains=holdouts, fixed=fixed,
                     test_hospitals=hospitals)
    threads = max(1, int(cpus_per_run)) if engine == "ray" else None  # torch threads = the CPUs Ray reserves
    stages = {job.key: run_stage_of(job, out / "runs" / job.key, ingest_dir, threads=threads) for job in jobs}
    fingerprints = {key: stage.fingerprint() for key, stage in stages.items()}
    todo = [job for job in jobs if not is_fresh(stages[job.key].out, fingerprints[job.key])]
    failed: dict[str, str] = {}
    with StageRecord("train_sweep", out, config=config, seed=config.seed, inputs={"ingest_dir": ingest_dir}) as rec:
        results = run_jobs([Job(job.key, run_stage, {"stage": stages[job.key], "echo": None}) for job in todo],
                           workers=workers, engine=engine, log_dir=out / "logs", desc="sweep",
                           done_before=len(jobs) - len(todo), address=address, cpus_per_job=cpus_per_run,
                           gpus_per_job=gpus_per_run)
        failed = {str(stages[r.name].out): r.error for r in results if not r.ok}
        runs = _finished_runs(jobs, {key: stage.out for key, stage in stages.items()}, fingerprints)
        rules = [TRAINING_DOMAIN.name, OOD_VALIDATION.name, ORACLE.name] + ([LODO.name] if leave_one_out else [])
        selection = _select_per_hospital(runs, hospitals) if hospitals else select_across_runs(runs, rules)
        write_json_atomic(out / "selection.json", _portable(selection, out))
        # per-hospital choices have no sweep-level model or results.csv column: the per-rule outputs get none
        _write_outputs(out, runs, {} if hospitals else selection, config.selection)
        rec.extra.update({"jobs": len(jobs), "ran": len(todo), "failed": failed, "n_failed": len(failed),
                          "selection": selection, "engine": engine, "test_hospitals": hospitals,
                          "warnings": warnings, "n_warnings": len(warnings)})
    return SweepResult(out=out, selection=selection, ran=len(todo), skipped=len(jobs) - len(todo), failed=failed,
                       warnings=warnings)


def _finished_runs(jobs: list[SweepJob], run_dirs: dict[str, Path], fingerprints: dict[str, str]
                   ) -> list[dict[str, Any]]:
    """sweep.json's entries: the runs finished under their fingerprint (the stage runner's rule), with their own
    selection."""
    runs = []
    for job in jobs:
        run_dir = run_dirs[job.key]
        if not is_fresh(run_dir, fingerprints[job.key]):
            continue
        selection = json.loads((run_dir / "selection.json").read_text(encoding="utf-8"))
        runs.append({"algorithm": job.config.algorithm, "draw": job.draw, "trial_seed": job.trial_seed,
                     "holdout": job.holdout, "test_hospital": job.test_hospital, "dir": str(run_dir),
                     "hparams": job.config.typed_hparams().to_dict(), "selection": selection})
    return runs


def _select_per_hospital(runs: list[dict[str, Any]], hospitals: Sequence[str]) -> dict[str, Any]:
    """Per test hospital, per rule, the best draw (its runs trained without that hospital: a full run each)."""
    def as_full(run: dict[str, Any]) -> dict[str, Any]:
        # the run's leave_one_domain_out rule scored its held-out hospital, here the test one: the oracle
        selection = {k: v for k, v in run["selection"].items() if k not in (ORACLE.name, LODO.name)}
        if LODO.name in run["selection"]:
            selection[ORACLE.name] = run["selection"][LODO.name]
        return {**run, "holdout": None, "selection": selection}

    rules = [TRAINING_DOMAIN.name, OOD_VALIDATION.name, ORACLE.name]
    return {h: select_across_runs([as_full(r) for r in runs if r["test_hospital"] == h], rules) for h in hospitals}


def _relative(run_dir: str, out: Path) -> str:
    """A run folder relative to the sweep folder (it lies in ``out/runs``): sweep.json stays valid when the sweep
    is moved, copied or read from another working directory (pipeline.results.tables.resolve_run_dir)."""
    return Path(os.path.relpath(run_dir, out)).as_posix()


def _portable(selection: Any, out: Path) -> Any:
    """selection.json with every choice's ``runs`` relative to the sweep folder (any nesting: per hospital)."""
    if not isinstance(selection, dict):
        return selection
    return {k: [_relative(d, out) for d in v] if k == "runs" else _portable(v, out) for k, v in selection.items()}


def _write_outputs(out: Path, runs: list[dict[str, Any]], selection: dict[str, dict[str, Any]], rule: str) -> None:
    """sweep.json, results.csv and the chosen models of a per-rule ``selection`` (selection.json is the caller's)."""
    write_json_atomic(out / "sweep.json", [{**{k: v for k, v in r.items() if k != "selection"},
                                            "dir": _relative(r["dir"], out)} for r in runs])
    rules = list(selection)
    with atomic_path(out / "results.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["run", "draw", "trial_seed", "holdout", "hparams", *rules])
        for r in runs:
            writer.writerow([Path(r["dir"]).name, r["draw"], r["trial_seed"], r["holdout"] or "",
                             json.dumps(r["hparams"], sort_keys=True),
                             *[r["selection"].get(x, {}).get("score", "") for x in rules]])
    for name, choice in selection.items():
        if choice.get("runs"):
            source = Path(choice["runs"][0]) / "selected" / f"{choice['checkpoint_rule']}.pt"
            if source.is_file():
                with atomic_path(out / "selected" / f"{name}.pt") as tmp:
                    shutil.copyfile(source, tmp)
    chosen = out / "selected" / f"{rule}.pt"
    if not selection:
        write_text_atomic(out / "NO_MODEL.txt", "A leave-one-hospital-out sweep has one selection per test "
                          "hospital (selection.json); `cxr-fishr results` tabulates them.\n")
    elif chosen.is_file():
        with atomic_path(out / "model.pt") as tmp:
            shutil.copyfile(chosen, tmp)
    else:
        write_text_atomic(out / "NO_MODEL.txt", f"No run had a non-constant checkpoint under rule {rule!r}.\n")
