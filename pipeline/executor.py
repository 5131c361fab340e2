"""The one executor: independent jobs side by side, in this process, in a process pool, or on Ray.

``run_jobs(jobs, workers=..., engine=...)`` runs every :class:`Job` and returns one :class:`JobResult` per job, in
the jobs' order. A failing job is reported in its result (``error``, and the exception) and never stops the others;
the caller decides what a failure means (the sweep lists them, the demo raises the first one with its log's tail).

* ``engine="local"``, one worker or one job: in this process, one after the other (the job's own progress bar and
  output show as usual).
* ``engine="local"``, several workers: a ``spawn`` process pool (safe after torch has started threads in the parent)
  with one torch thread per worker, so parallel jobs do not fight over the cores; each job's stdout and stderr go
  to ``<log_dir>/<name>.log``, and the parent draws one progress bar per job (``progress(job) -> (done, total)``)
  or one bar counting finished jobs.
* ``engine="ray"``: one Ray task per job with ``cpus_per_job`` / ``gpus_per_job`` reserved (torch threads = the
  CPUs reserved), on the cluster at ``address`` ("auto": the local node's) or on a local Ray started for the call
  and shut down after.

A job's function must be importable by name in a fresh interpreter (a module-level function, or a
``functools.partial`` of one), as the ``spawn`` pool and Ray pickle it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pipeline.errors import ConfigError, CxrFishrError

POLL_SECONDS = 1.0
Engine = Literal["local", "ray"]


@dataclass(frozen=True)
class Job:
    """``function(**kwargs)`` under a unique ``name`` (its log file's name); ``info`` is for the progress callback."""

    name: str
    function: Callable[..., Any]
    kwargs: dict[str, Any] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class JobResult:
    """One job's outcome: its return ``value``, or ``error`` (one line) and the ``exception`` (None on Ray, whose
    task errors are not the job's own exception); ``log``: the job's log file (pool jobs only)."""

    name: str
    value: Any = None
    error: str | None = None
    exception: BaseException | None = None
    log: Path | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def describe(exc: BaseException) -> str:
    """One line for a failed job: our own errors as they are (they name file, key and fix), others with their type
    and the last line of their message (a Ray task error's last line is the job's exception)."""
    if isinstance(exc, CxrFishrError):
        return str(exc)
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}".rstrip(": ")


def log_tail(log: str | Path | None, lines: int = 15) -> str:
    """The last ``lines`` lines of a job's log, indented ("    | ..."); "" without a log."""
    if not log or not Path(log).is_file():
        return ""
    text = Path(log).read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
    return "\n".join("    | " + line for line in text)


def _one_thread() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ["MKL_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def _redirect(log: str | None) -> None:
    if not log:
        return
    Path(log).parent.mkdir(parents=True, exist_ok=True)
    handle = open(log, "w", buffering=1, encoding="utf-8")  # noqa: SIM115 (lives as long as the worker's job)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(handle.fileno(), 1)
    os.dup2(handle.fileno(), 2)


def _call(function: Callable[..., Any], kwargs: dict[str, Any], log: str | None, threads: int | None) -> Any:
    """A job in a worker process or Ray task: its output to its log, its torch threads set, then the call."""
    _redirect(log)
    if threads:
        import torch

        torch.set_num_threads(threads)
    return function(**kwargs)


def run_jobs(
    jobs: Sequence[Job],
    *,
    workers: int = 1,
    engine: Engine = "local",
    log_dir: str | Path | None = None,
    progress: Callable[[Job], tuple[int, int]] | None = None,
    desc: str | None = None,
    done_before: int = 0,
    address: str | None = None,
    cpus_per_job: float = 1.0,
    gpus_per_job: float = 0.0,
) -> list[JobResult]:
    """Run ``jobs``; one result per job, in their order. ``workers``: local processes (>= 1); ``log_dir``: where a
    pool job's log goes (None: workers write to this process's terminal). Bars: ``progress`` draws one per job
    (pool only), else one bar counts finished jobs, labelled ``desc`` and starting at ``done_before`` (jobs the
    caller skipped, e.g. finished runs of a relaunched sweep). ConfigError for an unknown engine or no Ray."""
    if engine not in ("local", "ray"):
        raise ConfigError(f"executor: engine must be 'local' or 'ray', got {engine!r}.")
    if workers < 1:
        raise ConfigError(f"executor: workers must be >= 1, got {workers}.")
    if len({job.name for job in jobs}) != len(jobs):
        raise ConfigError(f"executor: job names must be distinct (each names a log file), got "
                          f"{[job.name for job in jobs]}.")
    if not jobs:
        return []
    if engine == "ray":
        return _ray(jobs, address=address, cpus_per_job=cpus_per_job, gpus_per_job=gpus_per_job, desc=desc,
                    done_before=done_before)
    if workers == 1 or len(jobs) == 1:
        return _in_process(jobs, desc=desc, done_before=done_before)
    return _pool(jobs, workers=workers, log_dir=Path(log_dir) if log_dir else None, progress=progress, desc=desc,
                 done_before=done_before)


def _counting_bar(jobs: Sequence[Job], desc: str | None, done_before: int, *, show: bool = True):
    from tqdm.auto import tqdm

    return tqdm(total=len(jobs) + done_before, initial=done_before,
                desc=desc or "  " + " + ".join(job.name for job in jobs), unit="job", file=sys.stderr,
                dynamic_ncols=True, disable=not show)


def _in_process(jobs: Sequence[Job], *, desc: str | None, done_before: int) -> list[JobResult]:
    results = []
    # a bar only when the caller asked for one (a sweep): a single stage shows its own progress
    bar = _counting_bar(jobs, desc, done_before, show=desc is not None)
    try:
        for job in jobs:
            try:
                results.append(JobResult(job.name, value=job.function(**job.kwargs)))
            except Exception as exc:  # a failed job is reported and the next one runs (KeyboardInterrupt stops all)
                results.append(JobResult(job.name, error=describe(exc), exception=exc))
            bar.update(1)
    finally:
        bar.close()
    return results


def _pool(jobs: Sequence[Job], *, workers: int, log_dir: Path | None, progress: Callable[[Job], tuple[int, int]] | None,
          desc: str | None, done_before: int) -> list[JobResult]:
    import multiprocessing

    from tqdm.auto import tqdm

    logs = {job.name: (log_dir / f"{job.name}.log" if log_dir else None) for job in jobs}
    results: dict[str, JobResult] = {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context, initializer=_one_thread) as pool:
        futures: dict[Future, Job] = {
            pool.submit(_call, job.function, job.kwargs, str(logs[job.name]) if logs[job.name] else None, None): job
            for job in jobs}
        bars: dict[str, Any] = {}
        if progress is not None:
            for position, job in enumerate(jobs):
                bars[job.name] = tqdm(total=progress(job)[1] or None, desc=f"{job.name:>14}", unit="step",
                                      position=position, leave=True, dynamic_ncols=True, file=sys.stderr)
        else:
            bars[""] = _counting_bar(jobs, desc, done_before)
        pending = set(futures)
        try:
            while pending:
                finished, pending = wait(pending, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
                for future in finished:
                    job = futures[future]
                    error = future.exception()
                    results[job.name] = (JobResult(job.name, value=future.result(), log=logs[job.name])
                                         if error is None else
                                         JobResult(job.name, error=describe(error), exception=error,
                                                   log=logs[job.name]))
                    bar = bars.get(job.name, bars.get(""))
                    bar.update(1 if progress is None else max(0, (bar.total or 0) - bar.n))
                if progress is not None:
                    for future in pending:
                        done, _ = progress(futures[future])
                        bar = bars[futures[future].name]
                        bar.update(max(0, done - bar.n))
        finally:
            for bar in bars.values():
                bar.close()
    return [results[job.name] for job in jobs]


def _ray(jobs: Sequence[Job], *, address: str | None, cpus_per_job: float, gpus_per_job: float, desc: str | None,
         done_before: int) -> list[JobResult]:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no network
    try:
        import ray
    except ImportError:
        raise ConfigError("executor: engine 'ray' needs the ray package, got none installed. Run `make setup` (it "
                          "installs the ray extra) or `pip install -e '.[ray]'`, or use the local engine.") from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    results: dict[str, JobResult] = {}
    bar = _counting_bar(jobs, desc, done_before)
    try:
        task = ray.remote(num_cpus=cpus_per_job, num_gpus=gpus_per_job, max_retries=0)(_call)
        threads = max(1, int(cpus_per_job))  # torch threads = the CPUs Ray reserved for the task
        pending = {task.remote(job.function, job.kwargs, None, threads): job for job in jobs}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            job = pending.pop(done[0])
            try:
                results[job.name] = JobResult(job.name, value=ray.get(done[0]))
            except ray.exceptions.RayError as exc:  # a crashed job (any exception, a dead worker) is reported
                cause = getattr(exc, "cause", None)
                results[job.name] = JobResult(job.name, error=describe(cause if isinstance(cause, BaseException)
                                                                       else exc))
            bar.update(1)
    finally:
        bar.close()
        if started:
            ray.shutdown()
    return [results[job.name] for job in jobs]


def raise_failures(results: Sequence[JobResult], *, echo: Callable[[str], None] | None = None) -> None:
    """Print each failed job's error and log tail through ``echo`` (default: stderr), then raise the first
    failure's own exception (a CxrFishrError naming the job when there is none to re-raise). No-op when all ok."""
    failed = [r for r in results if not r.ok]
    if not failed:
        return
    write = echo or (lambda line: sys.stderr.write(line + "\n"))
    for result in failed:
        tail = log_tail(result.log)
        write(f"\n{result.name} failed: {result.error}" + (f"; the end of its log ({result.log}):\n{tail}" if tail
                                                          else ""))
    first = failed[0]
    if first.exception is not None:
        raise first.exception
    raise CxrFishrError(f"{first.name} failed: {first.error}")
