"""DomainBed-style hparam search: N hparam draws x K seeds (x each held-out training domain for
leave-one-domain-out), one run directory per job named by the hash of its config, a ``done`` marker written last so
a re-launched sweep skips finished jobs and resumes unfinished ones from their checkpoints.

Draw 0 is the config's own hparams; draw d > 0 samples every searchable hparam from DomainBed's distributions
(``HParams.sample(seed_hash(algorithm, d))``) except the ``fixed`` ones (batch size by default), which keep the
config's values. Selection across runs (``selection.json``): per rule, the draw with the best mean score over its
seeds (each run's own checkpoint choice under that rule); leave-one-domain-out averages the held-out-domain score
over seeds and held-out domains and points at the draw's full runs (their training_domain checkpoint). A draw is
eligible under a rule only if every one of its runs selected a checkpoint (none was a constant predictor throughout).

Leave-one-hospital-out (``leave_one_hospital_out``) is a sweep dimension: every training hospital with enough
labelled images is the test hospital in turn (``holdout_domain``: never trained on, scored as ``holdout_acc``); the
selection is then made per test hospital (``selection.json``: {hospital: {rule: choice}}) and
``cxr-fishr results`` tabulates it. Engines: the local process pool (default) or Ray (``engine="ray"``: one task
per run with its CPUs/GPUs, on a local Ray or the cluster at ``address``); a failed run is reported, never stops
the others, and a relaunch skips the runs whose ``done`` marker exists.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pipeline.algorithms import get_algorithm_class
from pipeline.errors import ConfigError, CxrFishrError, DataError
from pipeline.seeding import seed_hash
from pipeline.stage import StageRecord, atomic_path, write_json_atomic, write_text_atomic
from pipeline.train.config import TrainConfig
from pipeline.train.selection import ORACLE_LABEL

DONE_MARKER = "done"


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


def _run_job(ingest_dir: str, config: dict[str, Any], run_dir: str) -> tuple[str, str | None]:
    """One job in a worker process (one torch thread); the ``done`` marker is written only on success."""
    import torch

    from pipeline.train import run

    cfg = TrainConfig.model_validate(config)
    torch.set_num_threads(cfg.threads or 1)
    try:
        result = run(ingest_dir=ingest_dir, config=cfg, out=run_dir, resume=True, progress=False)
    except CxrFishrError as exc:  # a failed job (NaN, ...) must not stop the others
        return run_dir, str(exc)
    write_json_atomic(Path(run_dir) / DONE_MARKER, {"final_step": result.final_step})
    return run_dir, None


def _ray_jobs(args: list[tuple[str, dict[str, Any], str]], *, address: str | None, cpus_per_run: float,
              gpus_per_run: float) -> Iterator[tuple[str, str | None]]:
    """``(run_dir, error)`` per job as Ray finishes them: one task per run; an exception is that run's error.
    Joins the cluster at ``address`` ("auto": the local node's), else starts a local Ray (shut down after)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no network
    try:
        import ray
    except ImportError:
        raise ConfigError("train: --engine ray needs the ray package, got none installed. Run `make setup` (it "
                          "installs the ray extra) or `pip install -e '.[ray]'`, or use --engine local.") from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    try:
        task = ray.remote(num_cpus=cpus_per_run, num_gpus=gpus_per_run, max_retries=0)(_run_job)
        # torch threads = the CPUs Ray reserved for the task (threads may change without changing the run)
        threads = max(1, int(cpus_per_run))
        pending = {task.remote(ingest, {**config, "threads": threads}, run_dir): run_dir
                   for ingest, config, run_dir in args}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            run_dir = pending.pop(done[0])
            try:
                yield ray.get(done[0])
            except ray.exceptions.RayError as exc:  # a crashed run (any exception, a dead worker) is reported
                yield run_dir, f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1]}"
    finally:
        if started:
            ray.shutdown()


def _local_jobs(args: list[tuple[str, dict[str, Any], str]], *, workers: int) -> Iterator[tuple[str, str | None]]:
    if workers > 1 and len(args) > 1:
        import multiprocessing

        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            yield from pool.map(_run_job, *zip(*args, strict=False))
    else:
        for arg in args:
            yield _run_job(*arg)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def select_across_runs(runs: list[dict[str, Any]], rules: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``runs``: {draw, trial_seed, holdout, dir, hparams, selection}. Per rule, the best draw by mean score."""
    out: dict[str, dict[str, Any]] = {}
    draws = sorted({r["draw"] for r in runs})
    for rule in rules:
        best: dict[str, Any] | None = None
        for draw in draws:
            full = [r for r in runs if r["draw"] == draw and r["holdout"] is None]
            scored = [r for r in runs if r["draw"] == draw and (r["holdout"] is not None) == (rule == "leave_one_domain_out")]
            scores = [r["selection"][rule]["score"] for r in scored
                      if rule in r["selection"] and r["selection"][rule]["score"] is not None]
            mean = _mean(scores)
            # A draw with any run that selected nothing (constant predictor throughout) is not eligible.
            if mean is None or len(scores) < len(scored) or not full or (best is not None and mean <= best["score"]):
                continue
            best = {"draw": draw, "score": mean, "scores": scores, "hparams": full[0]["hparams"],
                    "runs": [r["dir"] for r in full],
                    "checkpoint_rule": "training_domain" if rule == "leave_one_domain_out" else rule}
        out[rule] = best or {"draw": None, "score": None, "note": "no run had a non-constant checkpoint"}
        if rule == "oracle":
            out[rule]["label"] = ORACLE_LABEL
    return out


Engine = Literal["local", "ray"]


def run_sweep(*, ingest_dir: str | Path, config: TrainConfig, out: str | Path, n_hparams: int = 1, seeds: int = 1,
              leave_one_out: bool = False, workers: int = 1, fixed: Sequence[str] = ("batch_size",),
              leave_one_hospital_out: bool = False, engine: Engine = "local", address: str | None = None,
              cpus_per_run: float = 1.0, gpus_per_run: float = 0.0) -> SweepResult:
    """Plan, run (skipping finished runs) and select; ``failed`` maps each failed run directory to its error."""
    from tqdm import tqdm

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
    run_dirs = {job.key: out / "runs" / job.key for job in jobs}
    todo = [job for job in jobs if not (run_dirs[job.key] / DONE_MARKER).is_file()]
    failed: dict[str, str] = {}
    with StageRecord("train_sweep", out, config=config, seed=config.seed, inputs={"ingest_dir": ingest_dir}) as rec:
        args = [(str(ingest_dir), job.config.model_dump(mode="json"), str(run_dirs[job.key])) for job in todo]
        bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="sweep", unit="run")
        results = (_ray_jobs(args, address=address, cpus_per_run=cpus_per_run, gpus_per_run=gpus_per_run)
                   if engine == "ray" and args else _local_jobs(args, workers=workers))
        for run_dir, error in results:
            failed.update({run_dir: error} if error else {})
            bar.update(1)
        bar.close()
        runs = _finished_runs(jobs, run_dirs)
        rules = ["training_domain", "ood_validation", "oracle"] + (["leave_one_domain_out"] if leave_one_out else [])
        selection = _select_per_hospital(runs, hospitals) if hospitals else select_across_runs(runs, rules)
        write_json_atomic(out / "selection.json", _portable(selection, out))
        # per-hospital choices have no sweep-level model or results.csv column: the per-rule outputs get none
        _write_outputs(out, runs, {} if hospitals else selection, config.selection)
        rec.extra.update({"jobs": len(jobs), "ran": len(todo), "failed": failed, "n_failed": len(failed),
                          "selection": selection, "engine": engine, "test_hospitals": hospitals,
                          "warnings": warnings, "n_warnings": len(warnings)})
    return SweepResult(out=out, selection=selection, ran=len(todo), skipped=len(jobs) - len(todo), failed=failed,
                       warnings=warnings)


def _finished_runs(jobs: list[SweepJob], run_dirs: dict[str, Path]) -> list[dict[str, Any]]:
    """sweep.json's entries: the runs whose ``done`` marker exists, with their own selection."""
    runs = []
    for job in jobs:
        run_dir = run_dirs[job.key]
        if not (run_dir / DONE_MARKER).is_file():
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
        selection = {k: v for k, v in run["selection"].items() if k not in ("oracle", "leave_one_domain_out")}
        if "leave_one_domain_out" in run["selection"]:
            selection["oracle"] = run["selection"]["leave_one_domain_out"]
        return {**run, "holdout": None, "selection": selection}

    rules = ["training_domain", "ood_validation", "oracle"]
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
