"""Manifest + cache -> the training domains' infinite loaders and the evaluation sets of one run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.cache import ImageCache
from pipeline.data import CacheDataset, DomainLoader, MultiDomainLoader, build_augmentation
from pipeline.errors import DataError
from pipeline.manifest import MANIFEST_FILENAME, domain_values, read_manifest
from pipeline.train.config import TrainConfig
from pipeline.train.distributed import DistInfo, data_seed
from pipeline.train.evaluation import EvalSet


@dataclass
class TrainData:
    domains: list[str]  # training domains, in loader order (sorted)
    loaders: MultiDomainLoader
    val_sets: list[EvalSet]  # one per training domain with a val split
    ood_val: EvalSet | None
    test: EvalSet | None
    holdout: EvalSet | None
    image_size: int


def _eval_set(name: str, cache: ImageCache, rows) -> EvalSet:
    return EvalSet(name=name, dataset=CacheDataset(cache, rows), labels=rows["label"].to_numpy(dtype=np.int64),
                   positions=rows["position"].astype(str).to_numpy())


def build_train_data(ingest_dir: str | Path, cfg: TrainConfig, *, batch_size: int, dist: DistInfo) -> TrainData:
    frame = read_manifest(ingest_dir)
    cache = ImageCache.open(ingest_dir)
    where = f"{Path(ingest_dir) / MANIFEST_FILENAME}, domain columns {list(cfg.domain_columns)}"
    frame = frame.assign(_domain=domain_values(frame, tuple(cfg.domain_columns)).to_numpy())
    in_domain = frame[frame["split"].isin(["train", "val"])]
    all_domains = sorted(in_domain["_domain"].unique())
    if cfg.holdout_domain is not None and cfg.holdout_domain not in all_domains:
        raise DataError(f"train: holdout_domain must be one of the training domains {all_domains}, "
                        f"got {cfg.holdout_domain!r} ({where}).")
    domains = [d for d in all_domains if d != cfg.holdout_domain]
    if len(domains) < 2:
        raise DataError(
            f"train: training domains must number at least 2 (domain generalisation learns what is common to "
            f"several), got {len(domains)}: {domains} ({where}). Ingest more training sites, or split domains "
            "further with domain_columns (e.g. [site, position])."
        )
    augment = build_augmentation(cfg.augment, cache.size)
    loaders, val_sets = {}, []
    for domain in domains:
        rows = in_domain[in_domain["_domain"] == domain]
        train_rows = rows[rows["split"] == "train"]
        if train_rows.empty:
            raise DataError(f"train: training domain {domain!r} must have images in split 'train', got none ({where}).")
        loaders[domain] = DomainLoader(CacheDataset(cache, train_rows, augment), batch_size=batch_size,
                                       seed=data_seed(cfg.seed, domain, dist), num_workers=cfg.num_workers)
        val_rows = rows[rows["split"] == "val"]
        if not val_rows.empty:
            val_sets.append(_eval_set(domain, cache, val_rows))

    def whole(split: str) -> EvalSet | None:
        rows = frame[frame["split"] == split]
        return _eval_set(split, cache, rows) if not rows.empty else None

    holdout = None
    if cfg.holdout_domain is not None:
        holdout = _eval_set(cfg.holdout_domain, cache, in_domain[in_domain["_domain"] == cfg.holdout_domain])
    return TrainData(domains=domains, loaders=MultiDomainLoader(loaders), val_sets=val_sets,
                     ood_val=whole("ood_val"), test=whole("test"), holdout=holdout, image_size=cache.size)


def training_domains(ingest_dir: str | Path, cfg: TrainConfig) -> list[str]:
    """The domains of the train/val splits (before any hold-out): what leave-one-domain-out iterates over."""
    frame = read_manifest(ingest_dir)
    in_domain = frame[frame["split"].isin(["train", "val"])]
    return sorted(domain_values(in_domain, tuple(cfg.domain_columns)).unique())
