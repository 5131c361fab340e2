"""Evaluation during training: accuracy per split, conflict accuracy, constant-predictor flags (docs/design/metrics.md),
and the Fishr distance between the training domains' head-gradient variances (every algorithm: docs/audit.md)."""

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


@torch.no_grad()
def predict_with_features(algorithm: torch.nn.Module, eval_set: EvalSet, *, device: torch.device, amp: bool,
                          batch_size: int) -> tuple[np.ndarray, torch.Tensor]:
    """(arg-max predictions (N,), penultimate features (N, F) float32 on the CPU): the same operations as
    ``algorithm.predict`` (featurizer then classifier, under the same autocast), features kept for the Fishr
    distance."""
    preds, feats = [], []
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if amp and device.type == "cuda"
                else contextlib.nullcontext())
    with autocast:
        for x, _ in eval_loader(eval_set.dataset, batch_size=batch_size):
            z = algorithm.featurizer(x.to(device, non_blocking=True))
            preds.append(algorithm.classifier(z).argmax(dim=1).cpu().numpy())
            feats.append(z.float().cpu())
    if not preds:
        return np.empty(0, dtype=np.int64), torch.empty(0)
    return np.concatenate(preds), torch.cat(feats)


def fishr_distance(classifier: torch.nn.Module, features: list[torch.Tensor],
                   labels: list[np.ndarray]) -> dict[str, float | None | dict[str, str]]:
    """Fishr's penalty without moving average between the domains' head-gradient variances v_e (P,):
    ``fishr_distance`` = mean over domains and coordinates of (v_e - mean_e v_e)^2 (the penalty's units), and
    ``fishr_distance_relative`` = mean_e ||v_e - mean v|| / mean_e ||v_e|| (scale-free, comparable between
    algorithms). None with a ``fishr_distance_not_measured`` reason when fewer than 2 domains have >= 2 images."""
    from pipeline.algorithms.fishr import domain_grad_stats
    from pipeline.audit.landscape.curvature import head_gradients

    usable = [(z, y) for z, y in zip(features, labels, strict=True) if len(y) >= 2]
    if len(usable) < 2:
        reason = (f"{len(usable)} training domain(s) with >= 2 labelled validation images: a distance between "
                  "gradient variances needs two")
        return {"fishr_distance": None, "fishr_distance_relative": None,
                "fishr_distance_not_measured": {"fishr_distance": reason, "fishr_distance_relative": reason}}
    grads = [head_gradients(classifier, z, torch.as_tensor(y, dtype=torch.long)) for z, y in usable]
    variance = domain_grad_stats(torch.cat(grads), [len(g) for g in grads]).variance()  # (E, P)
    deviation = variance - variance.mean(dim=0, keepdim=True)
    scale = float(variance.norm(dim=1).mean())
    relative = float(deviation.norm(dim=1).mean()) / scale if scale > 0 else None
    out: dict[str, float | None | dict[str, str]] = {"fishr_distance": float(deviation.pow(2).mean()),
                                                     "fishr_distance_relative": relative}
    if relative is None:
        out["fishr_distance_not_measured"] = {"fishr_distance_relative": "every gradient variance is 0"}
    return out


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
        with_features = {s.name: predict_with_features(algorithm, s, device=device, amp=amp, batch_size=batch_size)
                         for s in val_sets}
        preds = {name: p for name, (p, _) in with_features.items()}
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
        record.update(fishr_distance(algorithm.classifier, [with_features[s.name][1] for s in val_sets],
                                     [s.labels for s in val_sets]))
        return record
    finally:
        algorithm.train(was_training)
