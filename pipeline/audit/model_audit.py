"""Audit one network: attributions + localisation, interventions, region ablation, probes, sanity, overlays."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.audit.attribute import attribute_batched, prepare_network
from pipeline.audit.config import AuditConfig
from pipeline.audit.data import AuditData, stratified_rows
from pipeline.audit.interventions import (
    intervention_predictions,
    intervention_summary,
    predicted_class,
    region_ablation_drops,
    region_ablation_share,
    region_mask,
)
from pipeline.audit.localisation import localise, summarise
from pipeline.audit.overlays import safe_name, write_overlay
from pipeline.audit.probes import PROBE_TARGETS, ProbeBalancedAccuracy, penultimate_features, probe_chance
from pipeline.audit.sanity import randomised_copy, rank_correlation
from pipeline.data.inference import image_batch
from pipeline.decision_threshold import Threshold


def _groups(frame, rows: np.ndarray) -> dict[str, dict[str, np.ndarray]]:
    from pipeline.protocol.shortcuts import label_strings

    sub = frame.iloc[rows]
    out: dict[str, dict[str, np.ndarray]] = {}
    for scope, values in (("per_site", sub["site"].astype(str).to_numpy()),
                          ("per_position", sub["position"].astype(str).to_numpy()),
                          ("per_label", label_strings(sub))):
        out[scope] = {v: values == v for v in sorted(set(values))}
    return out


def _targets(network: nn.Module, x: torch.Tensor, y: np.ndarray, mode: str, batch_size: int,
             threshold: float | None = None) -> torch.Tensor:
    """Attribution targets (B,): the label (the predicted class where it is unknown, ``y`` -1), class 1, or the
    predicted class at the checkpoint's ``threshold``."""
    if mode == "positive":
        return torch.ones(x.shape[0], dtype=torch.long)
    predicted = torch.from_numpy(predicted_class(network, x, batch_size, threshold))
    if mode == "label":
        return torch.where(torch.from_numpy(y) >= 0, torch.from_numpy(y), predicted)
    return predicted


def attribution_block(net: nn.Module, data: AuditData, rows: np.ndarray, cfg: AuditConfig,
                      keep_maps: np.ndarray, threshold: float | None = None) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Per method: localisation overall/per site/position/label, randomisation correlation, seconds per image.
    Returns the block and the maps of the rows flagged in ``keep_maps`` (for overlays)."""
    x, y = data.images(rows), data.labels(rows)
    lungs, shortcuts = data.lungs(rows), data.shortcuts(rows)
    target = _targets(net, x, y, cfg.target, cfg.batch_size, threshold)
    groups = _groups(data.frame, rows)
    n_sanity = min(cfg.sanity_images, len(rows))
    random_net = prepare_network(randomised_copy(net, cfg.seed))
    block: dict[str, Any] = {}
    kept: dict[str, np.ndarray] = {}
    for method in cfg.methods:
        start = time.perf_counter()
        maps = attribute_batched(method, net, x, target, cfg)
        seconds = (time.perf_counter() - start) / max(len(rows), 1)
        per_image = localise(maps, lungs, shortcuts, cfg.smoothing_sigma)
        entry: dict[str, Any] = {"overall": summarise(per_image, n=len(rows))}
        for scope, selections in groups.items():
            entry[scope] = {k: summarise(per_image, sel) for k, sel in selections.items()}
        random_maps = attribute_batched(method, random_net, x[:n_sanity], target[:n_sanity], cfg)
        corr = rank_correlation(maps[:n_sanity], random_maps)
        entry["randomisation_rank_correlation"] = float(np.nanmean(corr)) if np.isfinite(corr).any() else float("nan")
        if not np.isfinite(corr).any():
            entry["not_measured"] = {"randomisation_rank_correlation": "every sanity map is constant (or none ran)"}
        entry["seconds_per_image"] = seconds
        block[method] = entry
        kept[method] = maps[keep_maps]
    return block, kept


def behaviour_block(net: nn.Module, data: AuditData, rows: np.ndarray, cfg: AuditConfig,
                    threshold: float | None = None) -> dict[str, Any]:
    """Interventions and region ablation on ``rows``, in chunks (bounded memory), overall and per site; every
    prediction at the checkpoint's ``threshold`` (None: arg-max)."""
    preds: dict[str, list[np.ndarray]] = {}
    drops: list[np.ndarray] = []
    has_cf_all: list[np.ndarray] = []
    chunk = max(cfg.batch_size * 4, 1)
    for start in range(0, len(rows), chunk):
        part = rows[start:start + chunk]
        x = data.images(part)
        lungs = data.lungs(part)
        lung_t = torch.from_numpy(np.ascontiguousarray(lungs)).unsqueeze(1) if lungs is not None else None
        x_cf, has_cf = data.counterfactuals(part)
        for key, value in intervention_predictions(net, x, lung_t, x_cf, cfg.batch_size, threshold).items():
            preds.setdefault(key, []).append(value)
        has_cf_all.append(has_cf)
        shortcuts = data.shortcuts(part)
        if lungs is not None or shortcuts is not None:
            target = torch.from_numpy(preds["original"][-1])
            drops.append(region_ablation_drops(net, x, region_mask(lungs, shortcuts), target))
    merged = {k: np.concatenate(v) for k, v in preds.items()}
    y = data.labels(rows)
    has_cf = np.concatenate(has_cf_all)
    sites = data.frame["site"].astype(str).to_numpy()[rows]
    lungs_ok, shortcuts_ok = data.has_lungs(rows), data.has_shortcuts(rows)
    interventions = {"overall": intervention_summary(merged, y, has_cf, has_lungs=lungs_ok),
                     "per_site": {s: intervention_summary(merged, y, has_cf, sites == s, lungs_ok)
                                  for s in sorted(set(sites))}}
    out: dict[str, Any] = {"interventions": interventions, "region_ablation_share": None,
                           "region_ablation_abs_share": None}
    if drops:
        d = np.concatenate(drops)
        for key, absolute in (("region_ablation_share", False), ("region_ablation_abs_share", True)):
            out[key] = {"overall": region_ablation_share(d, absolute=absolute, has_lungs=lungs_ok,
                                                         has_shortcuts=shortcuts_ok),
                        "per_site": {s: region_ablation_share(d, sites == s, absolute, lungs_ok, shortcuts_ok)
                                     for s in sorted(set(sites))}}
    else:
        out["not_measured"] = dict.fromkeys(("region_ablation_share", "region_ablation_abs_share"),
                                            "no lung mask and no shortcut mask for these images")
    return out


def probe_targets(data: AuditData, attributes: list[str] | tuple[str, ...] = ()) -> list[str]:
    """site, each shortcut attribute, then the older targets (PROBE_TARGETS), those that are manifest columns."""
    wanted = ["site", *attributes, *PROBE_TARGETS]
    return [t for t in dict.fromkeys(wanted) if t in data.manifest.columns]


def probe_block(network: nn.Module, data: AuditData, cfg: AuditConfig,
                attributes: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """Linear probes of the frozen features for site and every shortcut attribute (label-free: every row of the
    probe splits, labelled or not); per target the images per class, and null + reason where it cannot be fitted."""
    from pipeline.protocol.shortcuts import attribute_values

    frame = data.manifest[data.manifest["split"].isin(cfg.probe_splits)].reset_index(drop=True)
    strata = (frame["site"].astype(str) + "|" + frame["position"].astype(str)).to_numpy()
    rows = stratified_rows(strata, cfg.probe_max_images, cfg.seed)
    sub = frame.iloc[rows]
    x = image_batch(data.cache.images, sub["cache_index"].to_numpy())
    features = penultimate_features(network, x, cfg.batch_size * 4)
    probe = ProbeBalancedAccuracy(folds=cfg.probe_folds, seed=cfg.seed)
    values, chance, notes, per_class, reasons = {}, {}, [], {}, {}
    for target in probe_targets(data, attributes):
        labels = attribute_values(sub, target)
        classes, counts = np.unique(labels[labels != "unknown"], return_counts=True)
        per_class[target] = {str(c): int(n) for c, n in zip(classes, counts, strict=True)}
        values[target], note = probe(features, labels)
        chance[target] = probe_chance(labels)
        if note:
            notes.append(f"{target}: {note}")
        if not np.isfinite(values[target]):
            reasons[target] = note or "not measured"
    return {"probe_balanced_accuracy": values, "probe_chance": chance, "probe_notes": notes,
            "probe_n_per_class": per_class, "probe_not_measured": reasons, "probe_n_images": int(len(rows))}


def audit_network(network: nn.Module, data: AuditData, cfg: AuditConfig, *, name: str,
                  overlay_dir: Path | None = None, threshold: Threshold | None = None,
                  attributes: list[str] | tuple[str, ...] = ()) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Everything the audit measures for one network; returns (model block, overlay records). Predictions use
    ``threshold`` (evaluate's, pipeline/decision_threshold.py; computed here when None) so both stages report one
    accuracy per checkpoint; ``attributes`` are the shortcut attributes to probe besides site."""
    from pipeline.decision_threshold import checkpoint_threshold

    torch.manual_seed(cfg.seed)
    if threshold is None:
        threshold = checkpoint_threshold(network=network, images=data.cache.images, manifest=data.manifest,
                                         batch_size=cfg.batch_size * 4)
    t = threshold.value
    net = prepare_network(network)
    attr_rows = data.stratified_sample(cfg.max_images, cfg.seed)
    strata = data.strata()[attr_rows]
    keep = np.zeros(len(attr_rows), dtype=bool)
    for key in sorted(set(strata)):
        keep[np.flatnonzero(strata == key)[: cfg.overlays_per_stratum]] = True
    methods, kept = attribution_block(net, data, attr_rows, cfg, keep, t)
    behaviour_rows = data.stratified_sample(cfg.max_intervention_images, cfg.seed)
    behaviour = behaviour_block(net, data, behaviour_rows, cfg, t)
    block = {"threshold": threshold.describe(), "methods": methods, **behaviour,
             **probe_block(net, data, cfg, attributes),
             "n_labelled": {"attribution": int(data.labelled(attr_rows).sum()), "attribution_total": len(attr_rows),
                            "interventions": int(data.labelled(behaviour_rows).sum()),
                            "interventions_total": len(behaviour_rows)}}
    overlays = []
    if overlay_dir is not None and keep.any():
        rows = attr_rows[keep]
        x = data.images(rows)[:, 0].numpy()
        lungs = data.lungs(rows)
        preds = _targets(net, data.images(rows), data.labels(rows), "predicted", cfg.batch_size, t).numpy()
        labels = data.labels(rows)
        for i, row in enumerate(rows):
            record = data.frame.iloc[row]
            file = f"{safe_name(name)}__{safe_name(str(record['image_id']))}.png"
            write_overlay(overlay_dir / file, x[i], {m: kept[m][i] for m in cfg.methods},
                          lungs[i] if lungs is not None else None,
                          title=f"{name} | {record['site']} {record['position']} label "
                                f"{labels[i] if labels[i] >= 0 else 'unknown'} pred {preds[i]}",
                          lungs_estimated=data.lung_status()[row] == "estimated")
            overlays.append({"model": name, "image_id": str(record["image_id"]), "site": str(record["site"]),
                             "position": str(record["position"]),
                             "label": int(labels[i]) if labels[i] >= 0 else None,
                             "prediction": int(preds[i]), "methods": list(cfg.methods),
                             "file": f"{overlay_dir.name}/{file}"})
    return block, overlays
