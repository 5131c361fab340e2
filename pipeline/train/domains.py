"""Manifest + cache -> the training domains' infinite loaders and the evaluation sets of one run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipeline.cache import ImageCache
from pipeline.compat import InputProfile, ingest_profile
from pipeline.data import CacheDataset, DomainLoader, MultiDomainLoader, build_augmentation
from pipeline.errors import ConfigError, DataError
from pipeline.manifest import MANIFEST_FILENAME, SPLITS, domain_values, labelled, n_unlabelled, read_manifest
from pipeline.train.config import TrainConfig
from pipeline.train.distributed import DistInfo, data_seed
from pipeline.train.monitor import EvalSet, make_eval_set, training_direction


@dataclass
class TrainData:
    domains: list[str]  # training domains, in loader order (sorted)
    loaders: MultiDomainLoader
    val_sets: list[EvalSet]  # one per training domain with a val split
    ood_val: EvalSet | None
    test: EvalSet | None
    holdout: EvalSet | None
    image_size: int
    # rows left out because their label is unknown, per split (train, val, ood_val, test): all four always present
    unlabelled_skipped: dict[str, int] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)  # counted in stage.json, each also printed


def _eval_set(name: str, cache: ImageCache, rows, direction=None) -> EvalSet:
    # conflict rows by pipeline/protocol/shortcuts.py's one definition (the headline attribute measurable on train)
    return make_eval_set(name, CacheDataset(cache, rows), rows, direction)


def _split_counts(rows, split: str) -> str:
    """'3 of 12 labelled' for one split of one domain's rows (for error messages)."""
    in_split = rows[rows["split"] == split]
    return f"{split}: {len(in_split) - n_unlabelled(in_split)} of {len(in_split)} labelled"


def _domain_train_rows(domain: str, rows, *, min_rows: int, batch_size: int, why: str, algorithm: str,
                       where: str, warnings: list[str]):
    """The labelled train rows of one training domain; too few is a DataError naming the domain and its counts."""
    train_rows = labelled(rows[rows["split"] == "train"])
    counts = f"{_split_counts(rows, 'train')}, {_split_counts(rows, 'val')}"
    if train_rows.empty:
        raise DataError(
            f"train: training domain {domain!r} must have labelled images in split 'train', got none ({counts}; "
            f"{where}). Give its images labels (the ingest metadata's label column), or leave the site out of "
            "the ingest source."
        )
    if len(train_rows) < min_rows:
        raise DataError(
            f"train: training domain {domain!r} must have >= {min_rows} labelled images in split 'train' for "
            f"{algorithm} ({why}), got {len(train_rows)} ({counts}; {where}). Add images or labels for this domain, "
            "or use an algorithm without a per-domain statistic (erm)."
        )
    if len(train_rows) < batch_size:
        # the infinite sampler never yields a short batch: it wraps into the next epoch, so images repeat
        warnings.append(f"train: training domain {domain!r} has {len(train_rows)} labelled train images, fewer "
                        f"than batch_size {batch_size}: each minibatch repeats some of them.")
    return train_rows


def build_train_data(ingest_dir: str | Path, cfg: TrainConfig, *, batch_size: int, dist: DistInfo) -> TrainData:
    """Loaders and evaluation sets over the labelled rows only (unlabelled ones counted per split).

    Raises DataError when a training domain has no labelled train image, or fewer than the algorithm's minimum
    per-domain batch (``HParams.min_batch_size``: the loader would repeat one image inside a batch).
    """
    frame = read_manifest(ingest_dir)
    cache = ImageCache.open(ingest_dir)
    where = f"{Path(ingest_dir) / MANIFEST_FILENAME}, domain columns {list(cfg.domain_columns)}"
    frame = frame.assign(_domain=domain_values(frame, tuple(cfg.domain_columns)).to_numpy())
    direction = training_direction(ingest_dir, frame)
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
    hparams_cls = type(cfg.typed_hparams())
    augment = build_augmentation(cfg.augment, cache.size)
    loaders, val_sets, warnings = {}, [], []
    for domain in domains:
        rows = in_domain[in_domain["_domain"] == domain]
        train_rows = _domain_train_rows(domain, rows, min_rows=hparams_cls.min_batch_size(), batch_size=batch_size,
                                        why=hparams_cls.batch_size_why(), algorithm=cfg.algorithm, where=where,
                                        warnings=warnings)
        loaders[domain] = DomainLoader(CacheDataset(cache, train_rows, augment), batch_size=batch_size,
                                       seed=data_seed(cfg.seed, domain, dist), num_workers=cfg.num_workers,
                                       shard=(dist.rank, dist.world_size))
        val_rows = labelled(rows[rows["split"] == "val"])
        if not val_rows.empty:
            val_sets.append(_eval_set(domain, cache, val_rows, direction))

    def whole(split: str) -> EvalSet | None:
        rows = labelled(frame[frame["split"] == split])
        return _eval_set(split, cache, rows, direction) if not rows.empty else None

    holdout = None
    if cfg.holdout_domain is not None:
        rows = in_domain[in_domain["_domain"] == cfg.holdout_domain]
        if n_unlabelled(rows) == len(rows):
            raise DataError(f"train: holdout_domain {cfg.holdout_domain!r} must have labelled images to score, got "
                            f"none ({_split_counts(rows, 'train')}, {_split_counts(rows, 'val')}; {where}). "
                            "Hold out a labelled domain.")
        holdout = _eval_set(cfg.holdout_domain, cache, labelled(rows), direction)
    skipped = {split: n_unlabelled(frame[frame["split"] == split]) for split in SPLITS}
    return TrainData(domains=domains, loaders=MultiDomainLoader(loaders), val_sets=val_sets,
                     ood_val=whole("ood_val"), test=whole("test"), holdout=holdout, image_size=cache.size,
                     unlabelled_skipped=skipped, warnings=warnings)


def training_profile(ingest_dir: str | Path, cfg: TrainConfig, data: TrainData) -> InputProfile:
    """What this run trains on (model files' ``meta["trained_on"]``, the resume checkpoint's): the ingest's profile
    with the training domains (hold-out excluded) and the head's classes. A model config that cannot consume the
    cache (channels) or the labels (classes) is a ConfigError."""
    profile = ingest_profile(ingest_dir, domain_columns=cfg.domain_columns)
    if cfg.model.in_chans != profile.channels:
        raise ConfigError(f"train: model.in_chans must equal the cache's image channels, got {cfg.model.in_chans} "
                          f"vs {profile.channels} ({ingest_dir}). Set model.in_chans: {profile.channels}.")
    outside = [v for v in profile.label_values or [] if not 0 <= v < cfg.model.num_classes]
    if outside:
        raise ConfigError(f"train: model.num_classes must cover every label value, got {cfg.model.num_classes} "
                          f"for labels {profile.label_values} ({ingest_dir}). Set model.num_classes: "
                          f"{max(profile.label_values) + 1}.")
    return profile.model_copy(update={"domains": list(data.domains), "num_classes": cfg.model.num_classes})


def training_domains(ingest_dir: str | Path, cfg: TrainConfig) -> list[str]:
    """The domains of the train/val splits (before any hold-out): what leave-one-domain-out iterates over."""
    frame = read_manifest(ingest_dir)
    in_domain = frame[frame["split"].isin(["train", "val"])]
    return sorted(domain_values(in_domain, tuple(cfg.domain_columns)).unique())


def resolve_domain_columns(ingest_dir: str | Path, cfg: TrainConfig, *, echo: bool = True) -> TrainConfig:
    """``cfg`` with ``domain_columns`` spelled as the manifest spells them (an exact match wins, else the one column
    equal ignoring case/whitespace/Unicode form, as ingest resolves its own config); each resolution printed on
    stderr. ConfigError (exit 2) naming domain_columns and listing the manifest's columns for a name matching none
    or two columns."""
    import sys

    from pipeline.names import norm_key

    columns = [str(c) for c in read_manifest(ingest_dir).columns if not str(c).startswith("_")]
    resolved = []
    for name in cfg.domain_columns:
        matches = [name] if name in columns else [c for c in columns if norm_key(c) == norm_key(name)]
        if len(matches) != 1:
            how = "matches no column" if not matches else f"matches {matches} ambiguously"
            raise ConfigError(f"train: domain_columns must name manifest columns (compared ignoring case), got "
                              f"{name!r}, which {how}. Manifest columns of {ingest_dir}: {columns}. Fix the name in "
                              "the train config.")
        if matches[0] != name and echo:
            print(f"train: domain_columns {name!r} resolved to the manifest column {matches[0]!r}", file=sys.stderr)
        resolved.append(matches[0])
    return cfg if resolved == list(cfg.domain_columns) else cfg.model_copy(update={"domain_columns": tuple(resolved)})
