"""Evaluation during training: accuracy per split, conflict accuracy, constant-predictor flags (docs/design/metrics.md)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.data import CacheDataset, eval_loader


@dataclass
class EvalSet:
    """One evaluated set: its dataset (row order = ``labels``/``positions`` order)."""

    name: str
    dataset: CacheDataset
    labels: np.ndarray
    positions: np.ndarray  # manifest 'position' strings


def conflict_mask(labels: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Images whose position disagrees with the label: COVID and erect, or not COVID and supine."""
    return ((labels == 1) & (positions == "erect")) | ((labels == 0) & (positions == "supine"))


@torch.no_grad()
def predict_set(algorithm: torch.nn.Module, eval_set: EvalSet, *, device: torch.device, amp: bool,
                batch_size: int) -> np.ndarray:
    preds = []
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if amp and device.type == "cuda"
                else contextlib.nullcontext())
    with autocast:
        for x, _ in eval_loader(eval_set.dataset, batch_size=batch_size):
            preds.append(algorithm.predict(x.to(device, non_blocking=True)).argmax(dim=1).cpu().numpy())
    return np.concatenate(preds) if preds else np.empty(0, dtype=np.int64)


def _acc(pred: np.ndarray, labels: np.ndarray) -> float | None:
    return float((pred == labels).mean()) if len(labels) else None


def _constant(pred: np.ndarray) -> bool | None:
    return bool(len(np.unique(pred)) <= 1) if len(pred) else None


def evaluate(algorithm: torch.nn.Module, *, val_sets: list[EvalSet], ood_val: EvalSet | None, test: EvalSet | None,
             holdout: EvalSet | None, device: torch.device, amp: bool, batch_size: int) -> dict:
    """The evaluation record of history.jsonl (without "step"): contract 4 keys plus holdout/ood conflict extras."""
    was_training = algorithm.training
    algorithm.eval()
    try:
        def run(s: EvalSet) -> np.ndarray:
            return predict_set(algorithm, s, device=device, amp=amp, batch_size=batch_size)

        record: dict = {}
        preds = {s.name: run(s) for s in val_sets}
        pooled_pred = np.concatenate([preds[s.name] for s in val_sets]) if val_sets else np.empty(0)
        pooled_y = np.concatenate([s.labels for s in val_sets]) if val_sets else np.empty(0)
        record["val_acc"] = _acc(pooled_pred, pooled_y)
        record["val_acc_per_domain"] = {s.name: _acc(preds[s.name], s.labels) for s in val_sets}
        constant = {"val": _constant(pooled_pred)}
        for key, s in (("ood_val", ood_val), ("test", test), ("holdout", holdout)):
            if s is None and key == "holdout":
                continue
            if s is None:
                record[f"{key}_acc"] = None
                record[f"{key}_conflict_acc"] = None
                continue
            pred = run(s)
            record[f"{key}_acc"] = _acc(pred, s.labels)
            mask = conflict_mask(s.labels, s.positions)
            record[f"{key}_conflict_acc"] = _acc(pred[mask], s.labels[mask])
            constant[key] = _constant(pred)
        record["predicts_constant"] = constant
        return record
    finally:
        algorithm.train(was_training)
