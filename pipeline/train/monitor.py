"""Evaluation during training: accuracy per split, conflict accuracy, constant-predictor flags (docs/design/metrics.md),
and the Fishr distance between the training domains' head-gradient variances (every algorithm: docs/audit.md)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from pipeline.data import CacheDataset, eval_loader
from pipeline.protocol.shortcuts import ShortcutDirection

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class EvalSet:
    """One evaluated set: its dataset (row order = ``labels``/``conflict`` order)."""

    name: str
    dataset: CacheDataset
    labels: np.ndarray
    # bool (N,): shortcut-conflicting rows by pipeline/protocol/shortcuts.py (the headline attribute's direction on the
    # train split); None when no shortcut attribute is measurable (the conflict accuracy is then None)
    conflict: np.ndarray | None = None
    conflict_attribute: str | None = None


def training_direction(ingest_dir: str | Path, frame: pd.DataFrame) -> ShortcutDirection | None:
    """The headline shortcut direction (first measurable attribute, pipeline/protocol/shortcuts.py) of the manifest
    ``frame``, as evaluate uses it; None when no attribute is measurable."""
    from pipeline.protocol.shortcuts import estimate_directions, headline_attribute, shortcut_attributes

    attributes, _ = shortcut_attributes(ingest_dir, frame)
    directions = estimate_directions(frame, attributes)
    attribute, _ = headline_attribute(directions)
    return directions.get(attribute) if attribute is not None else None


def make_eval_set(name: str, dataset: CacheDataset, rows: pd.DataFrame,
                  direction: ShortcutDirection | None) -> EvalSet:
    """An EvalSet over the labelled manifest ``rows`` (the dataset's row order) with its conflict mask."""
    from pipeline.data.dataset import label_array
    from pipeline.protocol.shortcuts import conflict_aligned

    conflict = conflict_aligned(rows, direction)[0] if direction is not None else None
    return EvalSet(name=name, dataset=dataset, labels=label_array(rows), conflict=conflict,
                   conflict_attribute=direction.attribute if direction is not None else None)


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
                          batch_size: int) -> tuple[np.ndarray, torch.Tensor, np.ndarray]:
    """(arg-max predictions (N,), penultimate features (N, F) float32 on the CPU, P(label = 1) (N,) float64): the
    same operations as ``algorithm.predict`` (featurizer then classifier, under the same autocast), features kept
    for the Fishr distance, probabilities for the threshold stored with the model."""
    preds, feats, probs = [], [], []
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if amp and device.type == "cuda"
                else contextlib.nullcontext())
    with autocast:
        for x, _ in eval_loader(eval_set.dataset, batch_size=batch_size):
            z = algorithm.featurizer(x.to(device, non_blocking=True))
            logits = algorithm.classifier(z)
            preds.append(logits.argmax(dim=1).cpu().numpy())
            probs.append(torch.softmax(logits.double(), dim=1)[:, 1].cpu().numpy())
            feats.append(z.float().cpu())
    if not preds:
        return np.empty(0, dtype=np.int64), torch.empty(0), np.empty(0)
    return np.concatenate(preds), torch.cat(feats), np.concatenate(probs)


def fishr_distance(classifier: torch.nn.Module, features: list[torch.Tensor],
                   labels: list[np.ndarray]) -> dict[str, float | None | dict[str, str]]:
    """Fishr's penalty without moving average between the domains' head-gradient variances v_e (P,):
    ``fishr_distance`` = mean over domains and coordinates of (v_e - mean_e v_e)^2 (the penalty's units), and
    ``fishr_distance_relative`` = mean_e ||v_e - mean v|| / mean_e ||v_e|| (scale-free, comparable between
    algorithms). None with a ``fishr_distance_not_measured`` reason when fewer than 2 domains have >= 2 images."""
    from pipeline.algorithms.fishr import domain_grad_stats
    from pipeline.models.gradients import head_gradients

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


def _val_threshold(y: np.ndarray, probs: list[np.ndarray]) -> float | None:
    """The balanced-accuracy threshold on the pooled val rows (None without both labels)."""
    from pipeline.decision_threshold import threshold_from_probabilities

    if not probs or np.unique(y).size < 2:
        return None
    return threshold_from_probabilities(np.asarray(y), np.concatenate(probs)).value


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
        preds = {name: p for name, (p, _, _) in with_features.items()}
        pooled_pred = np.concatenate([preds[s.name] for s in val_sets]) if val_sets else np.empty(0)
        pooled_y = np.concatenate([s.labels for s in val_sets]) if val_sets else np.empty(0)
        record["val_acc"] = _acc(pooled_pred, pooled_y)
        # the threshold evaluate would choose on these rows at this step (stored with a selected checkpoint)
        record["val_threshold"] = _val_threshold(pooled_y, [with_features[s.name][2] for s in val_sets])
        record["val_acc_per_domain"] = {s.name: _acc(preds[s.name], s.labels) for s in val_sets}
        constant = {"val": _constant(pooled_pred)}
        # the attribute of the *_conflict_acc keys (pipeline/protocol/shortcuts.py); None: not measurable, those keys None
        record["conflict_attribute"] = next((s.conflict_attribute for s in (ood_val, test, holdout) if s is not None),
                                            None)
        for key, s in (("ood_val", ood_val), ("test", test), ("holdout", holdout)):
            if s is None and key == "holdout":
                continue
            if s is None:
                record[f"{key}_acc"] = None
                record[f"{key}_conflict_acc"] = None
                continue
            pred = run(s)
            record[f"{key}_acc"] = _acc(pred, s.labels)
            mask = s.conflict if s.conflict is not None else np.zeros(len(s.labels), dtype=bool)
            record[f"{key}_conflict_acc"] = _acc(pred[mask], s.labels[mask])
            constant[key] = _constant(pred)
        record["predicts_constant"] = constant
        record.update(fishr_distance(algorithm.classifier, [with_features[s.name][1] for s in val_sets],
                                     [s.labels for s in val_sets]))
        return record
    finally:
        algorithm.train(was_training)
