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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.algorithms import build
from pipeline.compat import TRAINED_ON_KEY, InputProfile, check_resume_compat
from pipeline.errors import ConfigError, TrainingError
from pipeline.models import build_network, save_model
from pipeline.protocol.selection import SELECTION_METHODS, get_rule
from pipeline.stage import StageRecord, atomic_path, dumps_strict, write_json_atomic, write_text_atomic
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
        return meta

    def open_history(self) -> None:
        if self.is_main:
            write_text_atomic(self.history_path, "".join(dumps_strict(line) + "\n" for line in self.history))
            self._history_file = open(self.history_path, "a", encoding="utf-8")

    def log(self, line: dict[str, Any]) -> None:
        self.history.append(line)
        if self._history_file is not None:
            self._history_file.write(dumps_strict(line) + "\n")
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


def _train(*, ingest_dir: str | Path, cfg: TrainConfig, out: str | Path, resume: bool, progress: bool,
           dist: DistInfo) -> TrainResult:
    from tqdm import tqdm

    out, ingest_dir = Path(out), Path(ingest_dir)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_rank_device(resolve_device(cfg.device), dist)
    amp = cfg.amp and device.type == "cuda"
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
    tracker = SelectionTracker(rules)
    run = _Run(cfg, out, ingest_dir, data, dist.is_main, trained_on)
    warnings = list(data.warnings)
    inactive = hparams.inactive_penalty(steps=cfg.steps, algorithm=cfg.algorithm)
    warnings += [inactive] if inactive else []
    step = 0
    resumed = resume and checkpoint_path(out).exists()
    barrier(dist)  # every rank has looked at --out before rank 0 writes its first checkpoint
    if resumed:
        payload = load_checkpoint(out, cfg.resume_key(), map_location=device)
        # before the loaders' own check: names what changed in the ingest (size, labels, domains, hash)
        warnings += check_resume_compat(recorded=payload.get("trained_on"), current=trained_on,
                                        checkpoint=checkpoint_path(out))
        algorithm.load_state_dict(payload["algorithm"])
        data.loaders.load_state_dict(payload["loaders"])
        run.history = list(payload["history"])
        tracker.load_state_dict(payload["selection"])
        step = int(payload["step"])
        restore_rng_state(payload["rng"])
    broadcast_state(algorithm)  # DDP's start: every rank holds rank 0's weights and buffers
    last_checkpoint = step

    def checkpoint() -> None:
        nonlocal last_checkpoint
        if dist.is_main:
            save_checkpoint(out, algorithm=algorithm, step=step, loaders=data.loaders.state_dict(),
                            history=run.history, selection=tracker.state_dict(), resume_key=cfg.resume_key(),
                            trained_on=trained_on.model_dump(mode="json"))
        last_checkpoint = step

    record_cm = (StageRecord("train", out, config=cfg, seed=cfg.seed, inputs={"ingest_dir": ingest_dir})
                 if dist.is_main else contextlib.nullcontext())
    with record_cm as record:
        _announce(data, warnings, is_main=dist.is_main)
        run.open_history()
        if not resumed:
            checkpoint()  # step 0: a NaN at the first steps still leaves a checkpoint
        autocast = torch.autocast("cuda", dtype=torch.bfloat16) if amp else contextlib.nullcontext()
        bar = tqdm(total=cfg.steps, initial=step, desc=f"train {cfg.algorithm}", file=sys.stderr,
                   disable=not (progress and dist.is_main), dynamic_ncols=True, leave=False)
        step_seconds: list[float] = []
        algorithm.train()
        try:
            while step < cfg.steps:
                t0 = time.perf_counter()
                minibatches = [(x.to(device, non_blocking=True), y.to(device, non_blocking=True))
                               for x, y in data.loaders.next()]
                with autocast:
                    terms = {k: float(v) for k, v in algorithm.update(minibatches).items()}
                terms = mean_terms(terms, dist, device)  # the union batch's values (rank 0 logs them)
                step += 1
                _check_finite(terms, step, out, last_checkpoint, cfg.algorithm)
                step_seconds.append(time.perf_counter() - t0)
                run.log({"step": step, **terms})
                bar.set_postfix(_format_terms(terms), refresh=False)
                bar.update(1)
                if dist.is_main and (step % cfg.eval_every == 0 or step == cfg.steps):  # selection: rank 0
                    evaluation = evaluate(algorithm, val_sets=data.val_sets, ood_val=data.ood_val, test=data.test,
                                          holdout=data.holdout, device=device, amp=amp,
                                          batch_size=cfg.eval_batch_size)
                    run.log({"step": step, **evaluation})
                    for rule in tracker.observe(step, evaluation):
                        run.save_selected(rule, algorithm.network, step, tracker.choices[rule].score,
                                          threshold=evaluation.get("val_threshold"))
                if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                    checkpoint()
        finally:
            bar.close()
            run.close()
        if step > last_checkpoint:
            checkpoint()
        summary = tracker.summary()
        model_path = out / "model.pt"
        if dist.is_main:
            _write_model(run, algorithm, summary, step)
            write_json_atomic(out / "selection.json", summary)
            record.extra.update({
                "algorithm": cfg.algorithm, "hparams": hparams.to_dict(), "training_domains": data.domains,
                "final_step": step, "selection": summary, "device": str(device), "amp": amp,
                "median_step_seconds": statistics.median(step_seconds) if step_seconds else None,
                "unlabelled_skipped": data.unlabelled_skipped, "warnings": warnings, "n_warnings": len(warnings),
            })
    barrier(dist)  # rank 0's files are complete when any rank returns
    return TrainResult(out=out, model_path=model_path, selection=summary, final_step=step,
                       history_path=run.history_path)


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


def _write_model(run: _Run, algorithm, summary: dict[str, dict[str, Any]], step: int) -> None:
    rule = run.cfg.selection
    chosen = summary[rule]
    selected = run.out / "selected" / f"{rule}.pt"
    if chosen["step"] is not None and selected.is_file():
        with atomic_path(run.out / "model.pt") as tmp:
            shutil.copyfile(selected, tmp)
        return
    # Every evaluation under this rule predicted one class: keep the final weights, flagged, never "selected".
    print(f"warning: train: rule {rule!r} found no checkpoint that is not a constant predictor; model.pt holds "
          f"the final weights (step {step}) flagged constant_predictor.", file=sys.stderr)
    last = next((line for line in reversed(run.history) if "val_acc" in line), {})
    save_model(run.out / "model.pt", algorithm.network, run.cfg.model,
               run.meta(rule=rule, step=step, score=None, constant=True,
                        threshold=last.get("val_threshold") if last.get("step") == step else None))
