"""The models to evaluate or audit: one entry per run's ``model.pt`` plus its other selected checkpoints.

Shared by ``evaluate`` and ``audit`` so both name, label and load models the same way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError, DataError

UPPER_BOUND_RULES = ("oracle",)


@dataclass(frozen=True)
class ModelEntry:
    """One checkpoint to score: where it is, what it is and the protocol that picked it."""

    name: str
    run: str
    model_dir: Path
    checkpoint: Path
    selection_rule: str
    algorithm: str = "unknown"
    seed: int | None = None
    step: int | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def upper_bound(self) -> bool:
        return self.selection_rule in UPPER_BOUND_RULES

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "run": self.run,
            "model_dir": str(self.model_dir),
            "checkpoint": str(self.checkpoint.relative_to(self.model_dir)) if self.checkpoint.is_relative_to(
                self.model_dir) else str(self.checkpoint),
            "algorithm": self.algorithm,
            "seed": self.seed,
            "step": self.step,
            "selection_rule": self.selection_rule,
            "upper_bound": self.upper_bound,
        }

    def load(self):
        """(network, ModelConfig, meta) in eval mode on CPU."""
        from pipeline.models import load_model

        return load_model(self.checkpoint)


def _read_meta(checkpoint: Path) -> dict[str, Any]:
    import torch

    payload = torch.load(checkpoint, map_location="cpu", weights_only=False)
    return dict(payload.get("meta", {})) if isinstance(payload, dict) else {}


def _entry(name: str, run: str, model_dir: Path, checkpoint: Path, rule: str | None) -> ModelEntry:
    meta = _read_meta(checkpoint)
    seed = meta.get("seed")
    step = meta.get("step")
    return ModelEntry(
        name=name,
        run=run,
        model_dir=model_dir,
        checkpoint=checkpoint,
        selection_rule=str(rule or meta.get("selection_rule") or "unknown"),
        algorithm=str(meta.get("algorithm", "unknown")),
        seed=int(seed) if seed is not None else None,
        step=int(step) if step is not None else None,
        meta=meta,
    )


def collect_models(
    model_dirs: Sequence[str | Path], names: Sequence[str] | None = None, *, include_selected: bool = True,
    stage: str = "evaluate",
) -> list[ModelEntry]:
    """Entries for ``model_dirs`` (each a run dir with model.pt, or a .pt file); names default to the dir names."""
    if not model_dirs:
        raise ConfigError(f"{stage}: model_dirs must name at least one run directory, got none.")
    if names is not None and len(names) != len(model_dirs):
        raise ConfigError(
            f"{stage}: names must give one name per model dir, got {len(names)} names for {len(model_dirs)} dirs."
        )
    entries: list[ModelEntry] = []
    for i, raw in enumerate(model_dirs):
        path = Path(raw)
        checkpoint = path if path.is_file() else path / "model.pt"
        model_dir = path.parent if path.is_file() else path
        if not checkpoint.is_file():
            raise DataError(f"{stage}: model dir must hold model.pt, got nothing at {checkpoint}. "
                            "Train with `cxr-fishr train` first.")
        run = names[i] if names is not None else (path.stem if path.is_file() else path.name)
        main = _entry(run, run, model_dir, checkpoint, None)
        entries.append(main)
        selected = model_dir / "selected"
        if include_selected and path.is_dir() and selected.is_dir():
            for rule_file in sorted(selected.glob("*.pt")):
                rule = rule_file.stem
                if rule == main.selection_rule:
                    continue  # model.pt already is this rule's choice
                entries.append(_entry(f"{run}@{rule}", run, model_dir, rule_file, rule))
    seen: set[str] = set()
    for entry in entries:
        if entry.name in seen:
            raise ConfigError(f"{stage}: model names must be unique, got {entry.name!r} twice. Pass --name per run.")
        seen.add(entry.name)
    return entries


def read_history(model_dir: Path) -> list[dict[str, Any]]:
    """The lines of RUN/history.jsonl (empty when absent); a broken line is a DataError naming it."""
    path = Path(model_dir) / "history.jsonl"
    if not path.is_file():
        return []
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as exc:
            raise DataError(f"evaluate: history line must be JSON, got {line[:60]!r} ({path} line {number}).") from exc
    return rows
