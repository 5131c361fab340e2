"""A tiny domain-generalisation problem: 3 domains, 4 input features, 2 classes, a tiny MLP featurizer."""

from __future__ import annotations

import torch
from torch import nn


def tiny_networks(seed: int = 0, n_in: int = 4, n_features: int = 6, n_classes: int = 2) -> tuple[nn.Module, nn.Linear]:
    torch.manual_seed(seed)
    featurizer = nn.Sequential(nn.Linear(n_in, n_features), nn.Tanh())
    return featurizer, nn.Linear(n_features, n_classes)


def tiny_minibatches(seed: int, sizes=(8, 8, 8), n_in: int = 4, shift: float = 1.0, dtype=torch.float32):
    """One (x, y) per domain; the label is the sign of x0 + x1, each domain's inputs shifted differently."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for e, n in enumerate(sizes):
        x = torch.randn(n, n_in, generator=g, dtype=dtype)
        y = ((x[:, 0] + x[:, 1]) > 0).long()
        x[:, 2:] += shift * e
        batches.append((x, y))
    return batches
