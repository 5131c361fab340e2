"""`cxr-fishr train`: per-domain loaders, the DomainBed algorithms, evaluation, resumable checkpoints, selection."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.train.config import SELECTION_RULES, TrainConfig
from pipeline.train.loop import TrainResult

__all__ = ["SELECTION_RULES", "TrainConfig", "TrainResult", "load_train_config", "run"]


def load_train_config(config: TrainConfig | str | Path | Mapping[str, Any] | None,
                      overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """A TrainConfig from a config object, a YAML path or a mapping; ``overrides`` (non-None values) win."""
    from pipeline.config import load_config, validate_config

    overrides = {k: v for k, v in (overrides or {}).items() if v is not None}
    if config is None:
        return validate_config(TrainConfig, overrides, source="<defaults>")
    if isinstance(config, TrainConfig):
        if not overrides:
            return config
        return validate_config(TrainConfig, {**config.model_dump(), **overrides}, source="<config>")
    if isinstance(config, Mapping):
        return validate_config(TrainConfig, {**dict(config), **overrides}, source="<mapping>")
    return load_config(TrainConfig, config, overrides)


def run(*, ingest_dir: str | Path, config: TrainConfig | str | Path | Mapping[str, Any] | None, out: str | Path,
        resume: bool = False, progress: bool = True) -> TrainResult:
    """Train one run into ``out`` (contract 4); ``resume`` continues from ``out/checkpoints/last.pt``."""
    from pipeline.train.loop import train

    return train(ingest_dir=ingest_dir, cfg=load_train_config(config), out=out, resume=resume, progress=progress)
