"""Measure one network's loss landscape at every site of the manifest (see statistics.py for the definitions)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.artefacts.landscape import (
    QUANTITIES,
    DistanceMatrix,
    DistanceSummary,
    Estimate,
    ModelLandscape,
    SiteLandscape,
)
from pipeline.audit.landscape.curvature import head_gradients, head_hessian_diagonal, hutchinson_trace
from pipeline.audit.landscape.statistics import (
    SiteSample,
    all_summaries,
    bootstrap_correlation,
    bootstrap_summaries,
    correlation,
    distance_ceiling,
    distance_matrices,
    estimate,
    interval,
    moments,
)

MAX_SHUFFLES = 100  # label permutations per site for the correlation's baseline (each one head backward pass)

if TYPE_CHECKING:
    import pandas as pd

    from pipeline.audit.config import LandscapeConfig
    from pipeline.cache import ImageCache


@dataclass(frozen=True)
class SitePlan:
    """Which rows of the manifest stand for one site: its labelled rows of ``splits`` (frame positions)."""

    site: str
    role: str
    splits: list[str]
    rows: np.ndarray


def trained_sites(meta: dict) -> set[str] | None:
    """The sites a model trained on, from its meta (``training_domains`` when its domains are sites), else None."""
    domains = meta.get("training_domains")
    columns = [str(c).lower() for c in meta.get("domain_columns") or []]
    if columns == ["domain"]:  # the manifest's domain column: what it meant at training (pipeline/compat.py)
        columns = [str(c).lower() for c in (meta.get("trained_on") or {}).get("ingest_domain_columns") or []]
    if columns == ["site"] and isinstance(domains, list):
        return {str(d) for d in domains}
    return None


def site_plans(manifest: pd.DataFrame, *, training_split: str,
               trained_on: set[str] | None = None) -> list[SitePlan]:
    """One plan per site, sorted: a site with train/val rows is a training site (its ``training_split`` rows)
    unless ``trained_on`` leaves it out (role holdout, e.g. leave-one-domain-out: its train and val rows); any other
    site is new (role ood_val or test: its rows of that split)."""
    from pipeline.protocol.shortcuts import labelled_mask

    splits = manifest["split"].astype(str).to_numpy()
    sites = manifest["site"].astype(str).to_numpy()
    known = labelled_mask(manifest)
    plans = []
    for site in sorted(set(sites)):
        present = set(splits[sites == site])
        if present & {"train", "val"} and (trained_on is None or site in trained_on):
            role, used = "training", [training_split]
        elif present & {"train", "val"}:
            role, used = "holdout", sorted(present & {"train", "val"})
        else:
            role = "ood_val" if "ood_val" in present else "test"
            used = [role]
        rows = np.flatnonzero((sites == site) & np.isin(splits, used) & known)
        plans.append(SitePlan(site=site, role=role, splits=used, rows=rows))
    return plans


def sample_rows(manifest: pd.DataFrame, rows: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Up to ``n`` of ``rows``, balanced over labels (round-robin), fixed by ``seed``."""
    from pipeline.audit.data import stratified_rows
    from pipeline.protocol.shortcuts import label_strings

    return rows[stratified_rows(label_strings(manifest.iloc[rows]), n, seed)]


@torch.no_grad()
def _features(network: nn.Module, x: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.cat([network.featurizer(x[s:s + batch_size]).float() for s in range(0, len(x), batch_size)])
    return z, network.classifier(z)


def closed_form_head_gradients(probs: np.ndarray, z: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-sample head gradients (B, P) of CE(W z + b, y) in closed form, laid out as ``head_gradients`` (bias
    first, then W row-major): r = p - onehot(y), g = [r, r (x) z]. ``probs`` (B, K) softmax, ``z`` (B, F), ``y`` (B,)
    ints. Used for the label permutations, where BackPACK's per-call setup would cost ~35 ms each."""
    r = probs.copy()
    r[np.arange(len(y)), y] -= 1.0
    return np.concatenate([r, (r[:, :, None] * z[:, None, :]).reshape(len(y), -1)], axis=1)


def shuffled_label_correlation(head: nn.Linear, z: torch.Tensor, y: torch.Tensor, hessian_mean: np.ndarray, *,
                               shuffles: int, seed: int) -> Estimate:
    """corr(V_e, diag H_e) with the labels permuted within the site (V_e recomputed; diag H_e does not depend on
    the labels): its mean and 2.5-97.5 percentiles over ``shuffles`` permutations (no interval for one). For a
    linear head both vectors scale with the squared feature magnitudes, so the observed correlation means
    something only where it exceeds this baseline. ``z`` (B, F), ``y`` (B,), ``hessian_mean`` (P,)."""
    rng = np.random.default_rng(seed)
    with torch.no_grad():
        probs = torch.softmax(head(z.float()).float(), dim=1).double().numpy()
    features, labels = z.double().numpy(), y.numpy()
    values = []
    for _ in range(max(shuffles, 1)):
        g = closed_form_head_gradients(probs, features, labels[rng.permutation(len(labels))])
        values.append(correlation(((g - g.mean(axis=0)) ** 2).mean(axis=0), hessian_mean))
    draws = np.asarray(values, dtype=float)
    finite = draws[np.isfinite(draws)]
    if not finite.size:
        return Estimate(value=None, not_measured="V_e or diag(H_e) is constant under every permutation")
    low, high = interval(draws) if shuffles > 1 else (None, None)
    return Estimate(value=float(finite.mean()), low=low, high=high)


def _correlation_fields(network: nn.Module, z: torch.Tensor, y: torch.Tensor, sample: SiteSample, *,
                        cfg: LandscapeConfig, seed: int) -> dict:
    """The observed correlation's bootstrap interval and its shuffled-label baseline (SiteLandscape fields)."""
    m = moments(sample)
    low, high = interval(bootstrap_correlation(sample, n_boot=cfg.bootstrap, seed=seed))
    shuffled = shuffled_label_correlation(network.classifier, z, y, m.H, shuffles=min(cfg.bootstrap, MAX_SHUFFLES),
                                          seed=seed)
    return {"fisher_hessian_correlation_low": low, "fisher_hessian_correlation_high": high,
            "shuffled_label_correlation": shuffled}


def thresholded_fields(logits: torch.Tensor, y: torch.Tensor, threshold: float) -> dict:
    """Accuracy at the checkpoint's ``threshold`` with its class counts, majority baseline and constant flag
    (SiteLandscape fields); ``logits`` (B, 2), ``y`` (B,) ints."""
    from pipeline.protocol.metrics import is_constant, majority_accuracy

    predicted = (torch.softmax(logits.double(), dim=1)[:, 1] >= threshold).numpy()
    labels = y.numpy().astype(int)
    return {"threshold": float(threshold), "correct": predicted.astype(int) == labels,
            "n_pos": int((labels == 1).sum()), "n_neg": int((labels == 0).sum()),
            "majority_accuracy": majority_accuracy(labels), "constant_predictor": is_constant(predicted)}


def measure_site(network: nn.Module, x: torch.Tensor, y: torch.Tensor, *, plan: SitePlan,
                 cfg: LandscapeConfig, batch_size: int, seed: int, threshold: float) -> tuple[SiteSample, dict]:
    """Per-sample measurements of one site plus its trace estimate and thresholded accuracy fields (dict of
    SiteLandscape fields); ``threshold``: the checkpoint's (pipeline/decision_threshold.py)."""
    z, logits = _features(network, x, batch_size)
    loss = F.cross_entropy(logits, y, reduction="none")
    scored = thresholded_fields(logits, y, threshold)
    sample = SiteSample(site=plan.site, role=plan.role, loss=loss.numpy().astype(np.float64),
                        correct=scored.pop("correct"),
                        grads=head_gradients(network.classifier, z, y).numpy().astype(np.float64),
                        hessian=head_hessian_diagonal(logits, z).numpy().astype(np.float64))
    fields: dict = {**scored, **_correlation_fields(network, z, y, sample, cfg=cfg, seed=seed)}
    k = min(cfg.trace_images, len(y))
    if k and cfg.trace_probes:
        pick = torch.from_numpy(np.sort(np.random.default_rng(seed).permutation(len(y))[:k]))
        trace = hutchinson_trace(network, x[pick], y[pick], probes=cfg.trace_probes, seed=seed, batch_size=batch_size)
        fields = {**fields, "hessian_trace": trace.mean, "hessian_trace_se": trace.se, "trace_images": k,
                  "trace_probes": trace.probes}
    return sample, fields


def _site_record(plan: SitePlan, sample: SiteSample | None, fields: dict, reason: str | None) -> SiteLandscape:
    base = {"site": plan.site, "role": plan.role, "splits": plan.splits, "n_labelled": int(plan.rows.size)}
    if sample is None:
        return SiteLandscape(**base, n=0, not_measured={"site": reason or "not measured"})
    m = moments(sample)
    corr = correlation(m.V, m.H)
    notes = {} if np.isfinite(corr) else {"fisher_hessian_correlation": "V_e or diag(H_e) is constant"}
    if "hessian_trace" not in fields:
        notes["hessian_trace"] = "trace_images or trace_probes is 0 in the audit config"
    elif fields["hessian_trace_se"] is None:
        notes["hessian_trace_se"] = "one probe: no standard error"
    return SiteLandscape(**base, n=len(sample.loss), risk=m.R, accuracy=float(sample.correct.mean()),
                         gradient_mean_norm=float(np.linalg.norm(m.G)),
                         gradient_variance_norm=float(np.linalg.norm(m.V)),
                         hessian_diagonal_norm=float(np.linalg.norm(m.H)),
                         fisher_hessian_correlation=corr if np.isfinite(corr) else None,
                         **fields, not_measured=notes)


def _matrix(values: np.ndarray, measured: list[str], sites: list[str], normalised_by: str) -> DistanceMatrix:
    index = {s: i for i, s in enumerate(measured)}
    rows = [[float(values[index[a], index[b]]) if a in index and b in index and np.isfinite(values[index[a], index[b]])
             else None for b in sites] for a in sites]
    return DistanceMatrix(sites=sites, values=rows, normalised_by=normalised_by)


def _summaries(samples: list[SiteSample], cfg: LandscapeConfig, seed: int) -> dict[str, DistanceSummary]:
    training = np.array([s.role == "training" for s in samples])
    new_sites = [s.site for s in samples if s.role != "training"]
    point = all_summaries([moments(s) for s in samples], training)
    draws = (bootstrap_summaries(samples, training, n_boot=cfg.bootstrap, seed=seed) if cfg.bootstrap
             else np.empty((0, *point.shape)))
    why_within = f"{int(training.sum())} measured training site(s): a distance needs two"
    why_new = "no measured held-out site" if not new_sites else "no measured training site"
    out = {}
    for q_i, q in enumerate(QUANTITIES):
        col = draws[:, q_i] if draws.size else np.empty((0, point.shape[1]))
        out[q] = DistanceSummary(
            within_training=estimate(point[q_i, 0], col[:, 0] if col.size else col, why_within),
            to_new=estimate(point[q_i, 1], col[:, 1] if col.size else col, why_new),
            per_new_site={s: estimate(point[q_i, 2 + j], col[:, 2 + j] if col.size else col, why_new)
                          for j, s in enumerate(new_sites)})
    return out


def measure_model(network: nn.Module, *, manifest: pd.DataFrame, cache: ImageCache, cfg: LandscapeConfig,
                  batch_size: int, seed: int, threshold: float, trained_on: set[str] | None = None) -> ModelLandscape:
    """The landscape block of one network (eval mode: the deployed model) over every site of ``manifest``;
    ``threshold``: the checkpoint's decision threshold (evaluate's, model_threshold) every accuracy uses;
    ``trained_on`` (trained_sites(meta)) tells a site the model left out from its training sites."""
    from pipeline.data.inference import image_batch
    from pipeline.protocol.shortcuts import label_values

    start = time.perf_counter()
    network = network.eval()
    n_params = sum(p.numel() for p in network.parameters() if p.requires_grad)
    head = getattr(network, "classifier", None)
    if not isinstance(head, nn.Linear) or not hasattr(network, "featurizer"):
        return ModelLandscape(sites=[], distances={}, summaries={}, n_head_parameters=0, n_parameters=n_params,
                              seconds=0.0, not_measured={"landscape": "the network has no featurizer + nn.Linear "
                                                         "classifier head (pipeline/models)"})
    labels = label_values(manifest)
    samples, records = [], []
    for i, plan in enumerate(site_plans(manifest, training_split=cfg.training_split,
                                                trained_on=trained_on)):
        if plan.rows.size < cfg.min_images:
            records.append(_site_record(plan, None, {}, f"{plan.rows.size} labelled images in {plan.splits}, fewer "
                                        f"than landscape.min_images {cfg.min_images}"))
            continue
        rows = sample_rows(manifest, plan.rows, cfg.images_per_site, seed + i)
        x = image_batch(cache.images, manifest["cache_index"].to_numpy()[rows])
        y = torch.from_numpy(labels[rows].astype(np.int64))
        sample, fields = measure_site(network, x, y, plan=plan, cfg=cfg, batch_size=batch_size, seed=seed + i,
                                      threshold=threshold)
        samples.append(sample)
        records.append(_site_record(plan, sample, fields, None))
    sites = [r.site for r in records]
    measured = [s.site for s in samples]
    notes = {} if len(samples) >= 2 else {"distances": f"{len(samples)} measured site(s): a distance needs two"}
    mats = distance_matrices([moments(s) for s in samples]) if len(samples) >= 2 else {}
    distances = {q: _matrix(m, measured, sites, "nats" if q == "risk" else "mean norm over the measured sites")
                 for q, m in mats.items()}
    summaries = _summaries(samples, cfg, seed) if len(samples) >= 2 else {}
    return ModelLandscape(sites=records, distances=distances, summaries=summaries,
                          n_head_parameters=sum(p.numel() for p in head.parameters()), n_parameters=n_params,
                          seconds=time.perf_counter() - start, not_measured=notes,
                          distance_ceiling=distance_ceiling(len(samples)) if len(samples) >= 2 else None)
