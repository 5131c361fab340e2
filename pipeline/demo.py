"""`cxr-fishr demo`: synth -> ingest -> train (algorithms x seeds, in parallel) -> evaluate + audit -> report.

One config (``configs/demo.yaml``, :class:`DemoConfig`) drives it. The demo is a list of stage declarations
(``pipeline/stage.py``: name, config, inputs, compute step) handed to the stage runner and the executor
(``pipeline/executor.py``): a stage whose ``stage.json`` carries the fingerprint of the same config and inputs is
reused (an input stage's fingerprint is its ``stage.json``, so a stage that reran reruns the stages after it).
Independent training runs go to worker processes with one torch thread each; the parent shows one progress bar per
run (read from the runs' ``history.jsonl``), and evaluate and audit run side by side.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from pipeline.artefacts.stage_file import StageFile, load_stage
from pipeline.config import StrictModel, load_config, read_yaml
from pipeline.errors import DataError
from pipeline.executor import Job, raise_failures, run_jobs
from pipeline.protocol.selection import is_upper_bound
from pipeline.stage import Stage, StageRun, run_stage, write_json_atomic


class CohortStep(StrictModel):
    config: str = "configs/cohort/demo.yaml"
    n_per_site: int | None = Field(None, ge=1, description="images per site; null = the cohort config's counts")
    size: int | None = Field(None, ge=16, description="rendered DICOM side in pixels; null = the cohort config's")
    seed: int | None = None
    counterfactual: Literal["position"] | None = "position"


class IngestStep(StrictModel):
    config: str = "configs/ingest/synth_demo.yaml"
    size: int | None = Field(64, ge=16, description="cache image side in pixels (what models see)")


class AlgorithmStep(StrictModel):
    config: str
    overrides: dict[str, Any] = Field(default_factory=dict)  # TrainConfig keys, e.g. {steps: 10}


class TrainStep(StrictModel):
    algorithms: dict[str, AlgorithmStep] = Field(min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1)
    overrides: dict[str, Any] = Field(default_factory=dict)  # applied to every algorithm before its own overrides

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, seeds: list[int]) -> list[int]:
        if len(set(seeds)) != len(seeds):
            raise ValueError("seeds must be distinct (each seed names a run directory)")
        return seeds


class EvaluateStep(StrictModel):
    n_bootstrap: int = Field(1000, ge=0)
    last_k: int = Field(5, ge=1)
    batch_size: int = Field(64, ge=1)


class AuditStep(StrictModel):
    config: str = "configs/audit/default.yaml"
    overrides: dict[str, Any] = Field(default_factory=dict)  # AuditConfig keys, e.g. {max_images: 16}


class DemoConfig(StrictModel):
    title: str = "cxr-fishr demo: does the model look at the lungs?"
    out: str = "runs/demo"
    report: str = "reports/demo"
    workers: int = Field(2, ge=1, description="parallel worker processes (one torch thread each)")
    cohort: CohortStep = Field(default_factory=CohortStep)
    ingest: IngestStep = Field(default_factory=IngestStep)
    train: TrainStep
    evaluate: EvaluateStep = Field(default_factory=EvaluateStep)
    audit: AuditStep = Field(default_factory=AuditStep)


@dataclass
class DemoResult:
    report: Path
    summary_path: Path
    summary: dict[str, Any]
    timings: dict[str, dict[str, Any]] = field(default_factory=dict)


def load_demo_config(path: str | Path, overrides: dict[str, Any] | None = None) -> DemoConfig:
    return load_config(DemoConfig, path, overrides)


def _resolve(path: str, base: Path) -> Path:
    """A config-file path: as given if it exists (relative to the working directory), else beside demo.yaml."""
    candidate = Path(path)
    if candidate.is_absolute() or candidate.exists():
        return candidate
    beside = base / candidate
    return beside if beside.exists() else candidate


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """``override`` on top of ``base``; nested mappings merge key by key (so ``model: {backbone: x}`` keeps the rest)."""
    merged = dict(base)
    for key, value in override.items():
        merged[key] = _merge(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) \
            else value
    return merged


# ---- compute steps (module level: a worker process or Ray task unpickles them by name) -----------------------------

def _ingest(out: Path, *, source: Path, metadata: Path, config: Path, size: int | None) -> None:
    from pipeline import ingest

    ingest.run(source=source, out=out, metadata=metadata, config=config, size=size)


def _train(out: Path, *, resume: bool, ingest_dir: Path, config: dict[str, Any], progress: bool) -> None:
    from pipeline.train import run

    run(ingest_dir=str(ingest_dir), config=config, out=str(out), resume=resume, progress=progress)


def _evaluate(out: Path, *, model_dirs: list[str], ingest_dir: Path, n_bootstrap: int, last_k: int,
              batch_size: int) -> None:
    from pipeline.evaluate import run

    run(model_dirs=model_dirs, ingest_dir=str(ingest_dir), out=str(out), n_bootstrap=n_bootstrap, last_k=last_k,
        batch_size=batch_size)


def _audit(out: Path, *, model_dirs: list[str], ingest_dir: Path, config: dict[str, Any]) -> None:
    from pipeline.audit import run
    from pipeline.audit.config import AuditConfig
    from pipeline.config import validate_config

    run(model_dirs=model_dirs, ingest_dir=str(ingest_dir), out=str(out),
        config=validate_config(AuditConfig, config, "demo"))


def _report(out: Path, *, evaluate_dir: Path, audit_dir: Path, ingest_dir: Path, title: str) -> None:
    from pipeline.report import run

    run(evaluate_dir=evaluate_dir, audit_dir=audit_dir, ingest_dir=ingest_dir, out=out, title=title)


# ---- the demo's stages, declared ------------------------------------------------------------------------------------

class DemoStages:
    """The demo's stage declarations, from its config: ``synth`` -> ``ingest`` -> ``train`` (one stage per algorithm
    x seed) -> ``evaluate`` and ``audit`` -> ``report``. Each declaration names what its outputs depend on; the
    stage runner does the rest (fingerprints, reuse, stage.json)."""

    def __init__(self, cfg: DemoConfig, base: Path) -> None:
        self.cfg, self.base = cfg, base
        self.out = Path(cfg.out)

    def synth(self) -> Stage:
        from pipeline import synth

        c = self.cfg.cohort
        return synth.stage(config=_resolve(c.config, self.base), out=self.out / "cohort", n_per_site=c.n_per_site,
                           size=c.size, seed=c.seed, counterfactual=c.counterfactual, workers=self.cfg.workers)

    def ingest(self, cohort: Path) -> Stage:
        c = self.cfg.ingest
        config = _resolve(c.config, self.base)
        return Stage(name="ingest", out=self.out / "ingest", config=c.model_dump(),
                     inputs={"cohort": cohort, "config": config},
                     compute=functools.partial(_ingest, source=cohort / "dicom", metadata=cohort / "labels.csv",
                                               config=config, size=c.size))

    def train(self, ingest_dir: Path, *, parallel: bool = False) -> list[Stage]:
        """One resumable stage per algorithm x seed (``models/<algorithm>-s<seed>``). ``parallel``: runs share the
        cores, so each gets one torch thread and no progress bar of its own (the parent draws them)."""
        t = self.cfg.train
        stages = []
        for algorithm, spec in t.algorithms.items():
            base_config = read_yaml(_resolve(spec.config, self.base))
            for seed in t.seeds:
                config = _merge(_merge(base_config, t.overrides), spec.overrides)
                config["seed"] = seed
                config.setdefault("algorithm", algorithm)
                run_config = {**config, "threads": 1} if parallel else config
                # Threads change speed, not results: they stay out of the fingerprint.
                stages.append(Stage(
                    name="train", out=self.out / "models" / f"{algorithm}-s{seed}", seed=seed, resumable=True,
                    config={k: v for k, v in config.items() if k != "threads"}, inputs={"ingest_dir": ingest_dir},
                    compute=functools.partial(_train, ingest_dir=ingest_dir, config=run_config,
                                              progress=not parallel)))
        return stages

    def evaluate(self, ingest_dir: Path, runs: list[Path]) -> Stage:
        e = self.cfg.evaluate
        return Stage(name="evaluate", out=self.out / "evaluate", config=e.model_dump(),
                     inputs={"ingest_dir": ingest_dir, **{f"run:{r.name}": r for r in runs}},
                     compute=functools.partial(_evaluate, model_dirs=[str(r) for r in runs], ingest_dir=ingest_dir,
                                               **e.model_dump()))

    def audit(self, ingest_dir: Path, runs: list[Path]) -> Stage:
        a = self.cfg.audit
        config = _merge(read_yaml(_resolve(a.config, self.base)), a.overrides)
        return Stage(name="audit", out=self.out / "audit", config=config,
                     inputs={"ingest_dir": ingest_dir, **{f"run:{r.name}": r for r in runs}},
                     compute=functools.partial(_audit, model_dirs=[str(r) for r in runs], ingest_dir=ingest_dir,
                                               config=config))

    def report(self, evaluate_dir: Path, audit_dir: Path, ingest_dir: Path) -> Stage:
        # always rendered (seconds): the page says when it was generated and follows the report code as it is
        return Stage(name="report", out=Path(self.cfg.report), config={"title": self.cfg.title}, reuse=False,
                     inputs={"evaluate": evaluate_dir, "audit": audit_dir, "ingest": ingest_dir},
                     compute=functools.partial(_report, evaluate_dir=evaluate_dir, audit_dir=audit_dir,
                                               ingest_dir=ingest_dir, title=self.cfg.title))


class _Orchestrator:
    """Hands the declared stages to the runner and the executor, in order, and prints "[k/5] ..." lines."""

    def __init__(self, cfg: DemoConfig, base: Path, echo: Callable[[str], None]) -> None:
        self.cfg, self.echo = cfg, echo
        self.stages = DemoStages(cfg, base)
        self.out = Path(cfg.out)
        self.timings: dict[str, dict[str, Any]] = {}
        self.stage_no = 0

    def step(self, stage: Stage, what: str) -> Path:
        self.stage_no += 1
        if stage.is_fresh():
            self.echo(f"[{self.stage_no}/5] {stage.name}: reusing {stage.out} (inputs unchanged)")
            self.timings[stage.name] = {"seconds": 0.0, "reused": True}
            return stage.out
        self.echo(f"[{self.stage_no}/5] {stage.name}: {what} -> {stage.out}")
        start = time.perf_counter()
        run_stage(stage, echo=None)
        seconds = time.perf_counter() - start
        self.timings[stage.name] = {"seconds": round(seconds, 1), "reused": False}
        self.echo(f"      {stage.name} done in {seconds:.0f} s")
        return stage.out

    def parallel(self, stages: list[Stage], *, workers: int, steps: dict[Path, int] | None = None
                 ) -> list[StageRun]:
        """Run ``stages`` side by side (the executor); a failure prints its log's tail and is raised here.
        ``steps``: training runs' step counts by folder, for one progress bar per run (else one bar counts)."""
        jobs = [Job(stage.out.name, run_stage, {"stage": stage, "echo": None},
                    info={"out": stage.out, "steps": (steps or {}).get(stage.out, 0)}) for stage in stages]
        progress = (lambda job: _history_progress(job.info)) if steps else None
        results = run_jobs(jobs, workers=workers, log_dir=self.out / "logs", progress=progress)
        raise_failures(results)
        return [r.value for r in results]

    def train(self, ingest_dir: Path) -> list[Path]:
        self.stage_no += 1
        stages = self.stages.train(ingest_dir)
        steps = {stage.out: _steps(stage) for stage in stages}  # a bad config fails now, not in a worker later
        todo = [stage for stage in stages if not stage.is_fresh()]
        if self.cfg.workers > 1 and len(todo) > 1:  # one thread per process: parallel runs must not fight
            todo = [s for s in self.stages.train(ingest_dir, parallel=True) if s.out in {t.out for t in todo}]
        names = [stage.out.name for stage in stages]
        reused = [stage.out.name for stage in stages if stage.out not in {t.out for t in todo}]
        self.echo(f"[{self.stage_no}/5] train: {len(stages)} runs ({', '.join(names)})"
                  + (f"; reusing {', '.join(reused)}" if reused else "")
                  + (f"; {min(self.cfg.workers, len(todo))} in parallel" if len(todo) > 1 else ""))
        start = time.perf_counter()
        self.parallel(todo, workers=self.cfg.workers, steps=steps)
        seconds = time.perf_counter() - start
        self.timings["train"] = {"seconds": round(seconds, 1), "reused": not todo, "runs": names}
        if todo:
            self.echo(f"      train done in {seconds:.0f} s")
        return [stage.out for stage in stages]

    def evaluate_and_audit(self, ingest_dir: Path, runs: list[Path]) -> tuple[Path, Path]:
        self.stage_no += 1
        stages = [self.stages.evaluate(ingest_dir, runs), self.stages.audit(ingest_dir, runs)]
        todo = [stage for stage in stages if not stage.is_fresh()]
        names = [stage.name for stage in todo]
        self.echo(f"[{self.stage_no}/5] evaluate + audit: "
                  + (("running " + " and ".join(names)) if names else "reusing both (inputs unchanged)"))
        self.parallel(todo, workers=min(self.cfg.workers, 2))
        for stage in stages:
            ran = stage.name in names
            self.timings[stage.name] = {"seconds": _stage_file(stage.out).seconds if ran else 0.0,
                                        "reused": not ran}
        return stages[0].out, stages[1].out


def _stage_file(out: Path) -> StageFile:
    """The stage.json a stage that just ran wrote (the runner writes one after every compute step)."""
    record = load_stage(out)
    if record is None:
        raise DataError(f"demo: {out} must hold the stage.json its stage wrote, got none. Re-run `cxr-fishr demo`.")
    return record


def _steps(stage: Stage) -> int:
    """A training stage's number of steps (its progress bar's total); a ConfigError names a bad train config."""
    from pipeline.train import load_train_config

    return load_train_config(stage.compute.keywords["config"]).steps


def _history_progress(job: dict[str, Any]) -> tuple[int, int]:
    """(steps done, steps total) of a training run, read from the last line of its history.jsonl."""
    path = Path(job["out"]) / "history.jsonl"
    done = 0
    if path.is_file():
        with path.open("rb") as handle:
            handle.seek(0, 2)
            handle.seek(max(0, handle.tell() - 4096))
            for line in handle.read().decode("utf-8", "replace").splitlines()[::-1]:
                try:
                    done = int(json.loads(line).get("step", 0))
                    break
                except (ValueError, AttributeError):
                    continue
    return min(done, job["steps"]), job["steps"]


def run(*, config: DemoConfig | str | Path, echo: Callable[[str], None] = print) -> DemoResult:
    """Run (or reuse) every stage; write the report and ``<report>/summary.json``; return the headline."""
    from pipeline.artefacts.audit import AuditFile
    from pipeline.artefacts.metrics import MetricsFile
    from pipeline.report.headline import headline

    base = Path(config).resolve().parent if not isinstance(config, DemoConfig) else Path.cwd()
    cfg = config if isinstance(config, DemoConfig) else load_demo_config(config)
    orchestrator = _Orchestrator(cfg, base, echo)
    started = time.perf_counter()
    (Path(cfg.out) / "demo_state.json").unlink(missing_ok=True)  # the former reuse cache: stage.json decides now
    cohort = orchestrator.step(orchestrator.stages.synth(), "rendering the synthetic cohort")
    ingest_dir = orchestrator.step(orchestrator.stages.ingest(cohort),
                                   "decoding DICOMs into the manifest and image cache")
    runs = orchestrator.train(ingest_dir)
    eval_dir, audit_dir = orchestrator.evaluate_and_audit(ingest_dir, runs)
    echo(f"[5/5] report -> {cfg.report}/index.html")
    report = run_stage(orchestrator.stages.report(eval_dir, audit_dir, ingest_dir), echo=None).out
    index, missing = report / "index.html", _stage_file(report).missing or []
    metrics, audit = MetricsFile.load(eval_dir), AuditFile.load(audit_dir)
    summary = {
        "report": str(index),
        "config": str(config) if not isinstance(config, DemoConfig) else None,
        "seeds": cfg.train.seeds,
        "test_sites": metrics.sites,
        "algorithms": headline(metrics, audit),
        "metadata_baseline_auroc": metrics.metadata_baseline_auroc,
        "timings": orchestrator.timings,
        "seconds": round(time.perf_counter() - started, 1),
        "missing": missing,
    }
    summary_path = Path(cfg.report) / "summary.json"
    write_json_atomic(summary_path, summary)
    return DemoResult(report=index, summary_path=summary_path, summary=summary, timings=orchestrator.timings)


def format_headline(summary: dict[str, Any]) -> str:
    """The headline numbers as a few aligned lines (printed at the end of the demo)."""
    from pipeline.report.tables import is_number, mean_std_text

    columns = (("training_site_accuracy", "train sites"), ("test_site_accuracy", "test site"),
               ("conflict_accuracy", "conflicting"), ("counterfactual_flip_rate", "flip rate"),
               ("region_ablation_lungs", "lung share"))
    lines = [f"{'algorithm':<10} {'selection':<22} " + " ".join(f"{label:>14}" for _, label in columns)]
    reasons: dict[str, str] = {}  # reason -> its footnote mark
    for algorithm, entry in (summary.get("algorithms") or {}).items():
        for rule, block in entry.get("by_rule", {}).items():
            # a missing number prints "not measured" with its reason below, never a dash that reads like zero
            cells = []
            for k, _ in columns:
                b = block.get(k) or {}
                reason = (block.get("not_measured") or {}).get(k) or "absent from the results"
                if is_number(b.get("mean")):
                    # a lung share on estimated lung masks is an estimate wherever it is printed
                    est = " est." if k == "region_ablation_lungs" and block.get("lung_masks_estimated") else ""
                    cells.append(mean_std_text(b["mean"], b.get("std")) + est)
                else:
                    marks = reasons.setdefault(reason, "*" * (len(reasons) + 1))
                    cells.append(f"not measured{marks}")
            label = rule + (" (upper bound)" if is_upper_bound(rule) else "")
            lines.append(f"{algorithm:<10} {label:<22} " + " ".join(f"{c:>14}" for c in cells))
    lines += [f"{marks} not measured: {reason}" for reason, marks in reasons.items()]
    if any(b.get("lung_masks_estimated") for e in (summary.get("algorithms") or {}).values()
           for b in e.get("by_rule", {}).values()):
        lines.append("est.: rests on ESTIMATED lung masks (fixed ellipses), not a measurement")
    return "\n".join(lines)
