"""Torch datasets over the ingest cache, MONAI augmentations, per-domain infinite loaders and an eval loader."""

from pipeline.data.augment import Augmentation, AugmentConfig, build_augmentation
from pipeline.data.dataset import CacheDataset, images_to_input, label_array
from pipeline.data.loaders import DomainBatchSampler, DomainLoader, MultiDomainLoader, eval_loader

__all__ = [
    "AugmentConfig", "Augmentation", "CacheDataset", "DomainBatchSampler", "DomainLoader", "MultiDomainLoader",
    "build_augmentation", "eval_loader", "images_to_input", "label_array",
]
