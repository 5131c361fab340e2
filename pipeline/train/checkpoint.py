"""Resume state: everything an uninterrupted run carries from one step to the next, in one file.

``checkpoints/last.pt`` holds the algorithm's state_dict (weights, buffers such as Fishr's moving averages, and the
optimizer), the step, the seconds trained so far, the RNG states of torch (CPU and CUDA), numpy and python, the loaders' positions, the history
so far and the selection tracker. It is replaced atomically, so a run killed while writing keeps the previous one.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline.errors import ConfigError, DataError
from pipeline.stage import atomic_path

CHECKPOINT_DIRNAME = "checkpoints"
CHECKPOINT_FILENAME = "last.pt"
CHECKPOINT_FORMAT = 1


def checkpoint_path(out: str | Path) -> Path:
    return Path(out) / CHECKPOINT_DIRNAME / CHECKPOINT_FILENAME


def capture_rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    # generator states must be CPU byte tensors; a checkpoint loaded with map_location="cuda" moved them to the GPU
    torch.set_rng_state(state["torch"].cpu())
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def save_checkpoint(out: str | Path, *, algorithm: torch.nn.Module, step: int, loaders: dict, history: list,
                    selection: dict, resume_key: dict, trained_on: dict | None = None,
                    seconds: float | None = None) -> Path:
    """``trained_on``: the run's :class:`pipeline.compat.InputProfile` as a dict (checked on resume). ``seconds``:
    wall-clock seconds trained up to this step over every session (a resumed run's stage.json adds them)."""
    path = checkpoint_path(out)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "step": step,
        "algorithm": algorithm.state_dict(),
        "rng": capture_rng_state(),
        "loaders": loaders,
        "history": history,
        "selection": selection,
        "resume_key": resume_key,
        "trained_on": trained_on,
        "seconds": seconds,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)
    return path


def load_checkpoint(out: str | Path, resume_key: dict, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read the checkpoint of run ``out`` and check it belongs to the same run config."""
    path = checkpoint_path(out)
    if not path.is_file():
        raise DataError(f"train: {path} must exist to resume, got nothing. Run without --resume.")
    from pipeline.models.network import read_torch_file

    payload = read_torch_file(path, stage="train", what="train checkpoint", map_location=map_location,
                              fix="run again without --resume (training restarts at step 0)")
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise DataError(f"train: {path} must be checkpoint format {CHECKPOINT_FORMAT}, got {found!r}.")
    if payload["resume_key"] != resume_key:
        changed = sorted(k for k in set(resume_key) | set(payload["resume_key"])
                         if resume_key.get(k) != payload["resume_key"].get(k))
        raise ConfigError(
            f"train: config must match the checkpoint to resume, got changes in {changed} ({path}). "
            "Only steps, eval_every, checkpoint_every, device, threads, num_workers, eval_batch_size may change; "
            "start a new --out for anything else."
        )
    return payload
