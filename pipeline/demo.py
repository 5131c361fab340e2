"""`cxr-fishr demo`: synth -> ingest -> train (algorithms x seeds, in parallel) -> evaluate + audit -> report.

One config (``configs/demo.yaml``, :class:`DemoConfig`) drives it. A stage whose ``stage.json`` exists and whose
inputs are unchanged is reused: each stage's fingerprint (its parameters, the content of the config files it reads
and the finishing time of the stages it reads) is kept in ``<out>/demo_state.json``. Independent training runs go to
worker processes with one torch thread each; the parent shows one progress bar per run (read from the runs'
``history.jsonl``), and evaluate and audit run side by side.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, field_validator

from pipeline.config import StrictModel, load_config, read_yaml
from pipeline.protocol.selection import is_upper_bound
from pipeline.stage import read_stage, write_json_atomic


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


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"


def _fingerprint(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _finished(directory: Path) -> str:
    return str(read_stage(directory).get("finished", "not finished"))


class _Orchestrator:
    def __init__(self, cfg: DemoConfig, base: Path, echo: Callable[[str], None]) -> None:
        self.cfg, self.base, self.echo = cfg, base, echo
        self.out = Path(cfg.out)
        self.state_path = self.out / "demo_state.json"
        self.state: dict[str, str] = json.loads(self.state_path.read_text()) if self.state_path.is_file() else {}
        self.timings: dict[str, dict[str, Any]] = {}
        self.stage_no = 0

    def fresh(self, key: str, directory: Path, fingerprint: str) -> bool:
        return self.state.get(key) == fingerprint and (directory / "stage.json").is_file()

    def done(self, key: str, fingerprint: str) -> None:
        self.state[key] = fingerprint
        write_json_atomic(self.state_path, self.state)

    def step(self, key: str, directory: Path, fingerprint: str, work: Callable[[], None], what: str) -> None:
        self.stage_no += 1
        if self.fresh(key, directory, fingerprint):
            self.echo(f"[{self.stage_no}/5] {key}: reusing {directory} (inputs unchanged)")
            self.timings[key] = {"seconds": 0.0, "reused": True}
            return
        self.echo(f"[{self.stage_no}/5] {key}: {what} -> {directory}")
        start = time.perf_counter()
        work()
        seconds = time.perf_counter() - start
        self.timings[key] = {"seconds": round(seconds, 1), "reused": False}
        self.done(key, fingerprint)
        self.echo(f"      {key} done in {seconds:.0f} s")

    # ---- stages -------------------------------------------------------------------------------------------------
    def synth(self) -> Path:
        from pipeline import synth

        c = self.cfg.cohort
        config = _resolve(c.config, self.base)
        out = self.out / "cohort"
        fp = _fingerprint(c.model_dump(), _file_digest(config))
        self.step("synth", out, fp, lambda: synth.run(
            config=config, out=out, n_per_site=c.n_per_site, size=c.size, seed=c.seed,
            counterfactual=c.counterfactual, workers=self.cfg.workers), "rendering the synthetic cohort")
        return out

    def ingest(self, cohort: Path) -> Path:
        from pipeline import ingest

        c = self.cfg.ingest
        config = _resolve(c.config, self.base)
        out = self.out / "ingest"
        fp = _fingerprint(c.model_dump(), _file_digest(config), _finished(cohort))
        self.step("ingest", out, fp, lambda: ingest.run(
            source=cohort / "dicom", out=out, metadata=cohort / "labels.csv", config=config, size=c.size),
            "decoding DICOMs into the manifest and image cache")
        return out

    def train_jobs(self, ingest_dir: Path) -> list[dict[str, Any]]:
        jobs = []
        t = self.cfg.train
        for algorithm, spec in t.algorithms.items():
            config_path = _resolve(spec.config, self.base)
            base_config = read_yaml(config_path)
            for seed in t.seeds:
                config = _merge(_merge(base_config, t.overrides), spec.overrides)
                config["seed"] = seed
                config.setdefault("algorithm", algorithm)
                name = f"{algorithm}-s{seed}"
                out = self.out / "models" / name
                # Threads change speed, not results: they stay out of the fingerprint.
                fp = _fingerprint({k: v for k, v in config.items() if k != "threads"}, _finished(ingest_dir))
                jobs.append({"name": name, "config": config, "out": out, "fingerprint": fp,
                             "steps": int(config.get("steps", 0) or 0)})
        return jobs

    def train(self, ingest_dir: Path) -> list[Path]:
        from pipeline.demo_workers import run_jobs, train_job
        from pipeline.train import load_train_config

        self.stage_no += 1
        jobs = self.train_jobs(ingest_dir)
        for job in jobs:  # fail on a bad config now, not in a worker minutes later
            job["steps"] = load_train_config(job["config"]).steps
        todo = [j for j in jobs if not self.fresh(f"train:{j['name']}", j["out"], j["fingerprint"])]
        if self.cfg.workers > 1 and len(todo) > 1:
            for job in todo:  # one thread per process: parallel runs must not fight over the cores
                job["config"]["threads"] = 1
        reused = [j["name"] for j in jobs if j not in todo]
        self.echo(f"[{self.stage_no}/5] train: {len(jobs)} runs ({', '.join(j['name'] for j in jobs)})"
                  + (f"; reusing {', '.join(reused)}" if reused else "")
                  + (f"; {min(self.cfg.workers, len(todo))} in parallel" if len(todo) > 1 else ""))
        start = time.perf_counter()
        for job in todo:  # resume a run that was interrupted under the same config; start over otherwise
            job["resume"] = (job["out"] / "checkpoints").is_dir() and self.state.get(f"train:{job['name']}:started") \
                == job["fingerprint"]
            if not job["resume"] and job["out"].exists():
                shutil.rmtree(job["out"])  # a run of an older config or cohort (inside the demo's own out dir)
            self.state[f"train:{job['name']}:started"] = job["fingerprint"]
        write_json_atomic(self.state_path, self.state)
        calls = [(train_job, {"ingest_dir": str(ingest_dir), "config": j["config"], "out": str(j["out"]),
                              "resume": bool(j["resume"])}, j) for j in todo]
        run_jobs(calls, workers=self.cfg.workers, log_dir=self.out / "logs", progress=_history_progress)
        for job in todo:
            self.done(f"train:{job['name']}", job["fingerprint"])
        seconds = time.perf_counter() - start
        self.timings["train"] = {"seconds": round(seconds, 1), "reused": not todo, "runs": [j["name"] for j in jobs]}
        if todo:
            self.echo(f"      train done in {seconds:.0f} s")
        return [j["out"] for j in jobs]

    def evaluate_and_audit(self, ingest_dir: Path, runs: list[Path]) -> tuple[Path, Path]:
        from pipeline.demo_workers import audit_job, evaluate_job, run_jobs

        e, a = self.cfg.evaluate, self.cfg.audit
        audit_config = _resolve(a.config, self.base)
        upstream = [_finished(ingest_dir)] + [_finished(r) for r in runs]
        eval_out, audit_out = self.out / "evaluate", self.out / "audit"
        eval_fp = _fingerprint(e.model_dump(), [str(r) for r in runs], upstream)
        audit_fp = _fingerprint(a.model_dump(), _file_digest(audit_config), [str(r) for r in runs], upstream)
        self.stage_no += 1
        calls = []
        if not self.fresh("evaluate", eval_out, eval_fp):
            calls.append((evaluate_job, {"model_dirs": [str(r) for r in runs], "ingest_dir": str(ingest_dir),
                                         "out": str(eval_out), **e.model_dump()}, {"name": "evaluate"}))
        if not self.fresh("audit", audit_out, audit_fp):
            config = _merge(read_yaml(audit_config), a.overrides)
            calls.append((audit_job, {"model_dirs": [str(r) for r in runs], "ingest_dir": str(ingest_dir),
                                      "out": str(audit_out), "config": config}, {"name": "audit"}))
        names = [c[2]["name"] for c in calls]
        self.echo(f"[{self.stage_no}/5] evaluate + audit: "
                  + (("running " + " and ".join(names)) if names else "reusing both (inputs unchanged)"))
        run_jobs(calls, workers=min(self.cfg.workers, 2), log_dir=self.out / "logs", progress=None)
        for name, fp in (("evaluate", eval_fp), ("audit", audit_fp)):
            if name in names:
                self.done(name, fp)
            own = read_stage(eval_out if name == "evaluate" else audit_out).get("seconds")
            self.timings[name] = {"seconds": 0.0 if name not in names else own, "reused": name not in names}
        return eval_out, audit_out


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
    from pipeline.report import run as report_run
    from pipeline.report.headline import headline

    base = Path(config).resolve().parent if not isinstance(config, DemoConfig) else Path.cwd()
    cfg = config if isinstance(config, DemoConfig) else load_demo_config(config)
    orchestrator = _Orchestrator(cfg, base, echo)
    started = time.perf_counter()
    cohort = orchestrator.synth()
    ingest_dir = orchestrator.ingest(cohort)
    runs = orchestrator.train(ingest_dir)
    eval_dir, audit_dir = orchestrator.evaluate_and_audit(ingest_dir, runs)
    echo(f"[5/5] report -> {cfg.report}/index.html")
    result = report_run(evaluate_dir=eval_dir, audit_dir=audit_dir, ingest_dir=ingest_dir, out=cfg.report,
                        title=cfg.title)
    metrics = json.loads((eval_dir / "metrics.json").read_text())
    audit = json.loads((audit_dir / "audit.json").read_text())
    summary = {
        "report": str(result.index),
        "config": str(config) if not isinstance(config, DemoConfig) else None,
        "seeds": cfg.train.seeds,
        "test_sites": metrics.get("sites"),
        "algorithms": headline(metrics, audit),
        "metadata_baseline_auroc": metrics.get("metadata_baseline_auroc"),
        "timings": orchestrator.timings,
        "seconds": round(time.perf_counter() - started, 1),
        "missing": result.missing,
    }
    summary_path = Path(cfg.report) / "summary.json"
    write_json_atomic(summary_path, summary)
    return DemoResult(report=result.index, summary_path=summary_path, summary=summary, timings=orchestrator.timings)


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
