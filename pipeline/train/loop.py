"""The training loop: one minibatch per training domain per step, evaluation every K steps, checkpoints that
resume bit-for-bit, model selection, and the run directory of contract 4.

    RUN/model.pt              the checkpoint chosen by ``config.selection`` (pipeline.models.save_model format)
    RUN/selected/<rule>.pt    the checkpoint each available rule chose (same format)
    RUN/selection.json        {rule: {step, score, constant_predictor, ...}}
    RUN/history.jsonl         training lines {step, <loss terms>}; evaluation lines {step, val_acc, ...}
    RUN/checkpoints/last.pt   resume state
    RUN/stage.json            written last
"""

from __future__ import annotations

import contextlib
import math
import random
import shutil
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.algorithms import build
from pipeline.artefacts.history import HistoryLine, TrainingLine, parse_history_line
from pipeline.artefacts.model_meta import ModelMeta
from pipeline.artefacts.selection import SelectionFile
from pipeline.compat import TRAINED_ON_KEY, InputProfile, check_resume_compat
from pipeline.errors import ConfigError, TrainingError
from pipeline.models import build_network, save_model
from pipeline.protocol.selection import SELECTION_METHODS, get_rule
from pipeline.stage import StageRecord, atomic_path, dumps_strict, read_stage, write_text_atomic
from pipeline.train.checkpoint import checkpoint_path, load_checkpoint, restore_rng_state, save_checkpoint
from pipeline.train.config import TrainConfig
from pipeline.train.distributed import (
    DistInfo,
    barrier,
    broadcast_state,
    check_shards,
    dist_info,
    gradient_averaging,
    mean_terms,
    process_group,
    resolve_rank_device,
)
from pipeline.train.domains import TrainData, build_train_data, training_profile
from pipeline.train.monitor import evaluate
from pipeline.train.selection import SelectionTracker


@dataclass(frozen=True)
class TrainResult:
    out: Path
    model_path: Path
    selection: dict[str, dict[str, Any]]
    final_step: int
    history_path: Path


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train: device must be available, got 'cuda' but torch sees no GPU. Use device: auto or cpu.")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rules_for(data: TrainData) -> list[str]:
    """The rules this run can score: those whose selection split it has (pipeline/protocol/selection.py)."""
    present = {"val": bool(data.val_sets), "holdout": data.holdout is not None, "ood_val": data.ood_val is not None,
               "test": data.test is not None}
    return [rule.name for rule in SELECTION_METHODS if present[rule.split]]


def _check_finite(terms: dict[str, float], step: int, out: Path, last_checkpoint: int, algorithm: str) -> None:
    for name, value in terms.items():
        if not math.isfinite(value):
            raise TrainingError(
                f"train: loss term {name!r} must be finite, got {value} at step {step} ({algorithm}). "
                f"The last good checkpoint (step {last_checkpoint}) is kept in {checkpoint_path(out)}; "
                "lower lr (or the penalty weight) and train again into a new --out."
            )


def _format_terms(terms: dict[str, float]) -> dict[str, str]:
    return {k: f"{v:.4g}" for k, v in terms.items()}


class _Run:
    """State and writers of one run (only rank 0 writes)."""

    def __init__(self, cfg: TrainConfig, out: Path, ingest_dir: Path, data: TrainData, is_main: bool,
                 trained_on: InputProfile) -> None:
        self.cfg, self.out, self.ingest_dir, self.data, self.is_main = cfg, out, ingest_dir, data, is_main
        self.trained_on = trained_on
        self.hparams = cfg.typed_hparams().to_dict()
        self.history: list[dict[str, Any]] = []
        self.history_path = out / "history.jsonl"
        self._history_file = None

    def meta(self, *, rule: str, step: int | None, score: float | None, constant: bool = False,
             threshold: float | None = None) -> dict[str, Any]:
        """The model file's meta (pipeline/artefacts/model_meta.py ModelMeta), validated."""
        meta = {
            "algorithm": self.cfg.algorithm, "hparams": self.hparams, "seed": self.cfg.seed, "step": step,
            "selection_rule": rule, "selection_score": score, "training_domains": self.data.domains,
            "domain_columns": list(self.cfg.domain_columns), "ingest_dir": str(self.ingest_dir),
            "train_config": self.cfg.model_dump(mode="json"), "holdout_domain": self.cfg.holdout_domain,
            "image_size": self.data.image_size, "constant_predictor": constant,
            TRAINED_ON_KEY: self.trained_on.model_dump(mode="json"),
            "unlabelled_skipped": self.data.unlabelled_skipped,
        }
        if get_rule(rule).upper_bound:
            meta["selection_label"] = get_rule(rule).note
        if threshold is not None:  # evaluate's fallback on an ingest that is not this one (pipeline/decision_threshold.py)
            y = np.concatenate([s.labels for s in self.data.val_sets]) if self.data.val_sets else np.empty(0)
            meta["threshold"] = {"value": threshold, "source": "train: val (training domains)", "step": step,
                                 "n": int(y.size), "n_pos": int((y == 1).sum()), "n_neg": int((y == 0).sum())}
        return ModelMeta.from_meta(meta, where=f"{self.out} (being written)").to_dict()

    def open_history(self) -> None:
        if self.is_main:
            write_text_atomic(self.history_path, "".join(dumps_strict(line) + "\n" for line in self.history))
            self._history_file = open(self.history_path, "a", encoding="utf-8")

    def log_training(self, step: int, terms: dict[str, float]) -> None:
        self._log(TrainingLine(step=step, **terms))

    def log_evaluation(self, step: int, evaluation: dict[str, Any]) -> None:
        self._log(parse_history_line({"step": step, **evaluation}, where=f"{self.history_path} step {step}"))

    def _log(self, line: HistoryLine) -> None:
        data = line.model_dump(mode="json")
        self.history.append(data)  # plain dicts: the resume checkpoint stores them
        if self._history_file is not None:
            self._history_file.write(dumps_strict(data) + "\n")
            self._history_file.flush()

    def close(self) -> None:
        if self._history_file is not None:
            self._history_file.close()
            self._history_file = None

    def save_selected(self, rule: str, network: torch.nn.Module, step: int, score: float,
                      threshold: float | None = None) -> None:
        if self.is_main:
            save_model(self.out / "selected" / f"{rule}.pt", network, self.cfg.model,
                       self.meta(rule=rule, step=step, score=score, threshold=threshold))


def train(*, ingest_dir: str | Path, cfg: TrainConfig, out: str | Path, resume: bool = False,
          progress: bool = True) -> TrainResult:
    """One run; under torchrun (WORLD_SIZE > 1) one rank of a data-parallel run (pipeline/train/distributed.py)."""
    from pipeline.train.domains import resolve_domain_columns

    dist = dist_info()
    cfg = resolve_domain_columns(ingest_dir, cfg, echo=dist.is_main)  # [VIEW] -> [view], said once
    with process_group(resolve_device(cfg.device), dist), gradient_averaging(dist):
        return _train(ingest_dir=ingest_dir, cfg=cfg, out=out, resume=resume, progress=progress, dist=dist)


@dataclass
class _Training:
    """Everything one run carries from step to step (rank-local), and the writes that go with it."""

    cfg: TrainConfig
    out: Path
    ingest_dir: Path
    dist: DistInfo
    device: torch.device
    amp: bool
    data: TrainData
    trained_on: InputProfile
    algorithm: Any  # pipeline.algorithms.Algorithm
    tracker: SelectionTracker
    run: _Run
    warnings: list[str]
    step: int = 0
    last_checkpoint: int = 0
    resumed: bool = False
    # wall-clock seconds of the sessions before this one (from the checkpoint resumed from) and this session's start:
    # a resumed run's stage.json counts its whole training time, not only the last session's
    seconds_before: float = 0.0
    session_start: float = field(default_factory=time.perf_counter)

    def seconds(self) -> float:
        """Wall-clock seconds this run has trained so far, over every session."""
        return self.seconds_before + time.perf_counter() - self.session_start

    def checkpoint(self) -> None:
        """Save the resume state at the current step (rank 0 writes; every rank remembers the step)."""
        if self.dist.is_main:
            save_checkpoint(self.out, algorithm=self.algorithm, step=self.step, loaders=self.data.loaders.state_dict(),
                            history=self.run.history, selection=self.tracker.state_dict(),
                            resume_key=self.cfg.resume_key(), trained_on=self.trained_on.model_dump(mode="json"),
                            seconds=self.seconds())
        self.last_checkpoint = self.step

    def update(self, autocast: Any) -> dict[str, float]:
        """One optimisation step (one minibatch per training domain); returns the logged loss terms."""
        minibatches = [(x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True))
                       for x, y in self.data.loaders.next()]
        with autocast:
            terms = {k: float(v) for k, v in self.algorithm.update(minibatches).items()}
        terms = mean_terms(terms, self.dist, self.device)  # the union batch's values (rank 0 logs them)
        self.step += 1
        _check_finite(terms, self.step, self.out, self.last_checkpoint, self.cfg.algorithm)
        self.run.log_training(self.step, terms)
        return terms

    def evaluate_and_select(self) -> None:
        """Evaluate (rank 0), log the line, and save the checkpoint of every rule it improved."""
        cfg, data = self.cfg, self.data
        evaluation = evaluate(self.algorithm, val_sets=data.val_sets, ood_val=data.ood_val, test=data.test,
                              holdout=data.holdout, device=self.device, amp=self.amp, batch_size=cfg.eval_batch_size)
        self.run.log_evaluation(self.step, evaluation)
        for rule in self.tracker.observe(self.step, evaluation):
            self.run.save_selected(rule, self.algorithm.network, self.step, self.tracker.choices[rule].score,
                                   threshold=evaluation.get("val_threshold"))


def _setup(*, ingest_dir: Path, cfg: TrainConfig, out: Path, resume: bool, dist: DistInfo) -> _Training:
    """Check the run folder and the rules, load the data, build the algorithm (seeded: replicas start equal)."""
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_rank_device(resolve_device(cfg.device), dist)
    hparams = cfg.typed_hparams()
    check_shards(batch_size=hparams.batch_size, algorithm=cfg.algorithm, info=dist)
    if checkpoint_path(out).exists() and not resume:
        raise ConfigError(f"train: --out must be a new run directory, got {str(out)!r} which holds a checkpoint. "
                          "Pass --resume to continue that run, or choose another --out.")
    data = build_train_data(ingest_dir, cfg, batch_size=hparams.batch_size, dist=dist)
    trained_on = training_profile(ingest_dir, cfg, data)
    rules = _rules_for(data)
    if cfg.selection not in rules:
        raise ConfigError(f"train: selection must be one of the rules this data allows {rules}, "
                          f"got {cfg.selection!r} ({ingest_dir}).")
    seed_everything(cfg.seed)  # the same on every rank: replicas start equal
    network = build_network(cfg.model)
    algorithm = build(cfg.algorithm, network.featurizer, network.classifier, len(data.domains), cfg.hparams)
    algorithm.to(device)
    inactive = hparams.inactive_penalty(steps=cfg.steps, algorithm=cfg.algorithm)
    return _Training(cfg=cfg, out=out, ingest_dir=ingest_dir, dist=dist, device=device,
                     amp=cfg.amp and device.type == "cuda", data=data, trained_on=trained_on, algorithm=algorithm,
                     tracker=SelectionTracker(rules), run=_Run(cfg, out, ingest_dir, data, dist.is_main, trained_on),
                     warnings=[*data.warnings, *([inactive] if inactive else [])])


def _restore(training: _Training, *, resume: bool) -> None:
    """Continue from ``checkpoints/last.pt`` when resuming (weights, loaders, history, selection, RNG), then give
    every rank rank 0's weights."""
    out = training.out
    training.resumed = resume and checkpoint_path(out).exists()
    barrier(training.dist)  # every rank has looked at --out before rank 0 writes its first checkpoint
    if training.resumed:
        payload = load_checkpoint(out, training.cfg.resume_key(), map_location=training.device)
        # before the loaders' own check: names what changed in the ingest (size, labels, domains, hash)
        training.warnings += check_resume_compat(recorded=payload.get("trained_on"), current=training.trained_on,
                                                 checkpoint=checkpoint_path(out))
        training.algorithm.load_state_dict(payload["algorithm"])
        training.data.loaders.load_state_dict(payload["loaders"])
        training.run.history = list(payload["history"])
        training.tracker.load_state_dict(payload["selection"])
        training.step = int(payload["step"])
        restore_rng_state(payload["rng"])
        training.seconds_before = _seconds_before(payload, out)
        if training.dist.is_main:
            left = (f"{training.cfg.steps - training.step} steps to go" if training.step < training.cfg.steps else
                    "already finished: model.pt, selection.json and stage.json are rewritten, no step is trained")
            print(f"train: resuming {out} from step {training.step} of {training.cfg.steps} "
                  f"({checkpoint_path(out)}); {left}.", file=sys.stderr)
    broadcast_state(training.algorithm)  # DDP's start: every rank holds rank 0's weights and buffers
    training.last_checkpoint = training.step
    training.session_start = time.perf_counter()  # as stage.json's clock: the session's training, not its setup


def _seconds_before(payload: dict[str, Any], out: Path) -> float:
    """Seconds trained before this session: the checkpoint's; a checkpoint from before they were kept falls back to
    the run's stage.json when it finished at the checkpoint's step (a finished run resumed), else 0 (unknown)."""
    if payload.get("seconds") is not None:
        return float(payload["seconds"])
    try:
        record = read_stage(out)
    except (OSError, ValueError):
        return 0.0
    same_step = record.get("final_step") == payload.get("step")
    return float(record.get("seconds") or 0.0) if same_step else 0.0


def _loop(training: _Training, *, progress: bool) -> list[float]:
    """Train up to ``cfg.steps``: evaluate every ``eval_every`` steps, checkpoint every ``checkpoint_every``; returns
    the seconds of each optimisation step."""
    from tqdm import tqdm

    cfg, is_main = training.cfg, training.dist.is_main
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if training.amp else contextlib.nullcontext()
    bar = tqdm(total=cfg.steps, initial=training.step, desc=f"train {cfg.algorithm}", file=sys.stderr,
               disable=not (progress and is_main), dynamic_ncols=True, leave=False)
    step_seconds: list[float] = []
    training.algorithm.train()
    try:
        while training.step < cfg.steps:
            t0 = time.perf_counter()
            terms = training.update(autocast)
            step_seconds.append(time.perf_counter() - t0)
            bar.set_postfix(_format_terms(terms), refresh=False)
            bar.update(1)
            step = training.step
            if is_main and (step % cfg.eval_every == 0 or step == cfg.steps):  # selection: rank 0
                training.evaluate_and_select()
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                training.checkpoint()
    finally:
        bar.close()
        training.run.close()
    return step_seconds


def _finish(training: _Training, record: Any, step_seconds: list[float]) -> SelectionFile:
    """The last checkpoint, model.pt, selection.json and stage.json's extras (rank 0 writes)."""
    if training.step > training.last_checkpoint:
        training.checkpoint()
    selection = SelectionFile.from_dict(training.tracker.summary(), where=training.out / "selection.json")
    if training.dist.is_main:
        cfg, data = training.cfg, training.data
        _write_model(training.run, training.algorithm, selection, training.step)
        selection.write(training.out)
        record.extra.update({
            "algorithm": cfg.algorithm, "hparams": cfg.typed_hparams().to_dict(), "training_domains": data.domains,
            "final_step": training.step, "selection": selection.to_json_dict(), "device": str(training.device),
            "amp": training.amp, "median_step_seconds": statistics.median(step_seconds) if step_seconds else None,
            "unlabelled_skipped": data.unlabelled_skipped, "warnings": training.warnings,
            "n_warnings": len(training.warnings),
        })
    return selection


def _train(*, ingest_dir: str | Path, cfg: TrainConfig, out: str | Path, resume: bool, progress: bool,
           dist: DistInfo) -> TrainResult:
    out, ingest_dir = Path(out), Path(ingest_dir)
    training = _setup(ingest_dir=ingest_dir, cfg=cfg, out=out, resume=resume, dist=dist)
    _restore(training, resume=resume)
    record_cm = (StageRecord("train", out, config=cfg, seed=cfg.seed, inputs={"ingest_dir": ingest_dir})
                 if dist.is_main else contextlib.nullcontext())
    with record_cm as record:
        if record is not None:
            record.seconds_before = training.seconds_before
        _announce(training.data, training.warnings, is_main=dist.is_main)
        training.run.open_history()
        if not training.resumed:
            training.checkpoint()  # step 0: a NaN at the first steps still leaves a checkpoint
        try:
            step_seconds = _loop(training, progress=progress)
        except KeyboardInterrupt:
            if dist.is_main:  # Ctrl-C: say where the run stands and how to continue (the CLI then exits 130)
                print(f"train: interrupted at step {training.step} of {cfg.steps}; the last checkpoint is step "
                      f"{training.last_checkpoint} ({checkpoint_path(out)}). Rerun with --resume to continue "
                      "from it.", file=sys.stderr)
            raise
        selection = _finish(training, record, step_seconds)
    barrier(dist)  # rank 0's files are complete when any rank returns
    return TrainResult(out=out, model_path=out / "model.pt", selection=selection.to_json_dict(),
                       final_step=training.step, history_path=training.run.history_path)


def _announce(data: TrainData, warnings: list[str], *, is_main: bool) -> None:
    """Print the unlabelled rows left out (per split) and the data warnings (also counted in stage.json)."""
    if not is_main:
        return
    skipped = {split: n for split, n in data.unlabelled_skipped.items() if n}
    if skipped:
        print(f"train: skipped {sum(skipped.values())} unlabelled images ("
              + ", ".join(f"{split} {n}" for split, n in skipped.items()) + "); only labelled images train and "
              "select.", file=sys.stderr)
    for text in warnings:
        print(text if text.startswith("warning:") else f"warning: {text}", file=sys.stderr)


def _write_model(run: _Run, algorithm, selection: SelectionFile, step: int) -> None:
    """model.pt: the configured rule's selected checkpoint, else the final weights flagged constant_predictor."""
    rule = run.cfg.selection
    chosen = selection.rules()[rule]
    selected = run.out / "selected" / f"{rule}.pt"
    if chosen.step is not None and selected.is_file():
        with atomic_path(run.out / "model.pt") as tmp:
            shutil.copyfile(selected, tmp)
        return
    # Every evaluation under this rule predicted one class: keep the final weights, flagged, never "selected".
    print(f"warning: train: rule {rule!r} found no checkpoint that is not a constant predictor; model.pt holds "
          f"the final weights (step {step}) flagged constant_predictor.", file=sys.stderr)
    last = next((line for line in reversed(run.history) if "val_acc" in line), {})  # the last EvaluationLine
    save_model(run.out / "model.pt", algorithm.network, run.cfg.model,
               run.meta(rule=rule, step=step, score=None, constant=True,
                        threshold=last.get("val_threshold") if last.get("step") == step else None))
