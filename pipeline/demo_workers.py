"""Worker processes for `cxr-fishr demo`: independent stage runs side by side, one torch thread each.

Each job is a top-level function (picklable under the ``spawn`` start method, which is safe after torch has
started threads in the parent). A worker's stdout and stderr go to ``<log>``; the parent draws the progress bars.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Any

POLL_SECONDS = 1.0


def _one_thread() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def _redirect(log: str | None) -> None:
    if not log:
        return
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    handle = open(log, "w", buffering=1, encoding="utf-8")  # noqa: SIM115 (lives as long as the worker)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(handle.fileno(), 1)
    os.dup2(handle.fileno(), 2)


def train_job(*, ingest_dir: str, config: dict[str, Any], out: str, resume: bool, log: str | None = None,
              in_worker: bool = False) -> str:
    if in_worker:
        _redirect(log)
    from pipeline.train import run

    run(ingest_dir=ingest_dir, config=config, out=out, resume=resume, progress=not in_worker)
    return out


def evaluate_job(*, model_dirs: list[str], ingest_dir: str, out: str, n_bootstrap: int, last_k: int,
                 batch_size: int, log: str | None = None, in_worker: bool = False) -> str:
    if in_worker:
        _redirect(log)
    from pipeline.evaluate import run

    run(model_dirs=model_dirs, ingest_dir=ingest_dir, out=out, n_bootstrap=n_bootstrap, last_k=last_k,
        batch_size=batch_size)
    return out


def audit_job(*, model_dirs: list[str], ingest_dir: str, out: str, config: dict[str, Any], log: str | None = None,
              in_worker: bool = False) -> str:
    if in_worker:
        _redirect(log)
    from pipeline.audit import run
    from pipeline.audit.config import AuditConfig
    from pipeline.config import validate_config

    run(model_dirs=model_dirs, ingest_dir=ingest_dir, out=out, config=validate_config(AuditConfig, config, "demo"))
    return out


def _tail(log: str | None, lines: int = 15) -> str:
    if not log or not Path(log).is_file():
        return ""
    text = Path(log).read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    return "\n".join("    | " + line for line in text)


def run_jobs(
    calls: list[tuple[Callable[..., Any], dict[str, Any], dict[str, Any]]],
    *,
    workers: int,
    log_dir: Path,
    progress: Callable[[dict[str, Any]], tuple[int, int]] | None,
) -> None:
    """Run ``(function, kwargs, job)`` calls; in-process when one worker or one call, else in a process pool.

    ``progress(job) -> (done, total)`` feeds one bar per job; without it, one bar counts finished jobs.
    """
    if not calls:
        return
    if workers <= 1 or len(calls) == 1:
        for function, kwargs, _ in calls:
            function(**kwargs)
        return
    import multiprocessing

    from tqdm.auto import tqdm

    for _, kwargs, job in calls:
        kwargs.update(log=str(log_dir / f"{job['name']}.log"), in_worker=True)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(calls)), mp_context=context,
                             initializer=_one_thread) as pool:
        futures: dict[Future, dict[str, Any]] = {pool.submit(f, **kw): job for f, kw, job in calls}
        bars = {}
        if progress is not None:
            for position, job in enumerate(job for _, _, job in calls):
                bars[job["name"]] = tqdm(total=progress(job)[1] or None, desc=f"{job['name']:>14}", unit="step",
                                         position=position, leave=True, dynamic_ncols=True, file=sys.stderr)
        else:
            bars["all"] = tqdm(total=len(calls), desc="  " + " + ".join(j["name"] for _, _, j in calls),
                               unit="stage", file=sys.stderr, dynamic_ncols=True)
        pending = set(futures)
        try:
            while pending:
                finished, pending = wait(pending, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
                for future in finished:
                    job = futures[future]
                    error = future.exception()
                    if error is not None:
                        tail = _tail(job.get("log") or str(log_dir / f"{job['name']}.log"))
                        for other in pending:
                            other.cancel()
                        sys.stderr.write(f"\n{job['name']} failed; the end of its log:\n{tail}\n")
                        raise error
                    if progress is None:
                        bars["all"].update(1)
                    elif bars[job["name"]].total:
                        bars[job["name"]].update(bars[job["name"]].total - bars[job["name"]].n)
                for future, job in futures.items():
                    if progress is not None and future in pending:
                        done, total = progress(job)
                        bar = bars[job["name"]]
                        bar.update(max(0, done - bar.n))
        finally:
            for bar in bars.values():
                bar.close()
