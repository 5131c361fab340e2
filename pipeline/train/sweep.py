"""DomainBed-style hparam search: N hparam draws x K seeds (x each held-out training domain for
leave-one-domain-out), one run directory per job named by the hash of its config, a ``done`` marker written last so
a re-launched sweep skips finished jobs and resumes unfinished ones from their checkpoints.

Draw 0 is the config's own hparams; draw d > 0 samples every searchable hparam from DomainBed's distributions
(``HParams.sample(seed_hash(algorithm, d))``) except the ``fixed`` ones (batch size by default), which keep the
config's values. Selection across runs (``selection.json``): per rule, the draw with the best mean score over its
seeds (each run's own checkpoint choice under that rule); leave-one-domain-out averages the held-out-domain score
over seeds and held-out domains and points at the draw's full runs (their training_domain checkpoint). A draw is
eligible under a rule only if every one of its runs selected a checkpoint (none was a constant predictor throughout).
"""

from __future__ import annotations

import csv
import hashlib
import json
import shutil
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.algorithms import get_algorithm_class
from pipeline.algorithms.hparams import seed_hash
from pipeline.errors import CxrFishrError
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


def draw_hparams(cfg: TrainConfig, draw: int, fixed: Sequence[str]) -> dict[str, Any]:
    base = cfg.typed_hparams().to_dict()
    if draw == 0:
        return base
    sampled = get_algorithm_class(cfg.algorithm).HPARAMS.sample(seed_hash(cfg.algorithm, draw)).to_dict()
    return {**sampled, **{name: base[name] for name in fixed if name in base}}


def plan_jobs(cfg: TrainConfig, *, n_hparams: int, seeds: int, holdout_domains: Sequence[str] = (),
              fixed: Sequence[str] = ("batch_size",)) -> list[SweepJob]:
    jobs = []
    for draw in range(n_hparams):
        hparams = draw_hparams(cfg, draw, fixed)
        for trial in range(seeds):
            for holdout in (None, *holdout_domains):
                update = {"hparams": hparams, "seed": cfg.seed + trial, "holdout_domain": holdout,
                          "threads": cfg.threads or 1}
                config = TrainConfig.model_validate({**cfg.model_dump(), **update})
                jobs.append(SweepJob(draw=draw, trial_seed=trial, holdout=holdout, config=config))
    return jobs


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


def run_sweep(*, ingest_dir: str | Path, config: TrainConfig, out: str | Path, n_hparams: int = 1, seeds: int = 1,
              leave_one_out: bool = False, workers: int = 1, fixed: Sequence[str] = ("batch_size",)) -> SweepResult:
    from tqdm import tqdm

    from pipeline.train.datasets import training_domains

    out, ingest_dir = Path(out), Path(ingest_dir).resolve()
    holdouts = training_domains(ingest_dir, config) if leave_one_out else []
    jobs = plan_jobs(config, n_hparams=n_hparams, seeds=seeds, holdout_domains=holdouts, fixed=fixed)
    run_dirs = {job.key: out / "runs" / job.key for job in jobs}
    todo = [job for job in jobs if not (run_dirs[job.key] / DONE_MARKER).is_file()]
    failed: dict[str, str] = {}
    with StageRecord("train_sweep", out, config=config, seed=config.seed, inputs={"ingest_dir": ingest_dir}) as rec:
        args = [(str(ingest_dir), job.config.model_dump(mode="json"), str(run_dirs[job.key])) for job in todo]
        bar = tqdm(total=len(jobs), initial=len(jobs) - len(todo), desc="sweep", unit="run")
        if workers > 1 and len(args) > 1:
            import multiprocessing

            with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                for run_dir, error in pool.map(_run_job, *zip(*args, strict=False)):
                    failed.update({run_dir: error} if error else {})
                    bar.update(1)
        else:
            for arg in args:
                run_dir, error = _run_job(*arg)
                failed.update({run_dir: error} if error else {})
                bar.update(1)
        bar.close()
        runs = []
        for job in jobs:
            run_dir = run_dirs[job.key]
            if not (run_dir / DONE_MARKER).is_file():
                continue
            selection = json.loads((run_dir / "selection.json").read_text(encoding="utf-8"))
            runs.append({"draw": job.draw, "trial_seed": job.trial_seed, "holdout": job.holdout, "dir": str(run_dir),
                         "hparams": job.config.typed_hparams().to_dict(), "selection": selection})
        rules = ["training_domain", "ood_validation", "oracle"] + (["leave_one_domain_out"] if leave_one_out else [])
        selection = select_across_runs(runs, rules)
        _write_outputs(out, runs, selection, config.selection)
        rec.extra.update({"jobs": len(jobs), "ran": len(todo), "failed": failed, "selection": selection})
    return SweepResult(out=out, selection=selection, ran=len(todo), skipped=len(jobs) - len(todo), failed=failed)


def _write_outputs(out: Path, runs: list[dict[str, Any]], selection: dict[str, dict[str, Any]], rule: str) -> None:
    write_json_atomic(out / "selection.json", selection)
    write_json_atomic(out / "sweep.json", [{k: v for k, v in r.items() if k != "selection"} for r in runs])
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
    if chosen.is_file():
        with atomic_path(out / "model.pt") as tmp:
            shutil.copyfile(chosen, tmp)
    else:
        write_text_atomic(out / "NO_MODEL.txt", f"No run had a non-constant checkpoint under rule {rule!r}.\n")
