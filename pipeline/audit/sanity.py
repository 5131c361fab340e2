"""Model-randomisation check (Adebayo et al. 2018): does the map change when the learnt weights are gone?"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn


def randomised_copy(network: nn.Module, seed: int = 0) -> nn.Module:
    """A copy with every learnt parameter re-drawn: ``reset_parameters()`` where a module has it (conv, linear,
    norm: their initial distribution), other parameters permuted at random (same values, no learnt structure)."""
    net = copy.deepcopy(network)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    covered: set[int] = set()
    with torch.no_grad():
        for module in net.modules():
            if hasattr(module, "reset_parameters") and callable(module.reset_parameters):
                module.reset_parameters()
                covered.update(id(p) for p in module.parameters(recurse=False))
        for p in net.parameters():
            if id(p) not in covered and p.numel() > 1:
                p.copy_(p.flatten()[torch.randperm(p.numel(), generator=generator)].view_as(p))
    return net.eval()


def rank_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-image Spearman correlation of |a| and |b| ((B, H, W) each) -> (B,), NaN where either map is constant."""
    from scipy.stats import spearmanr

    out = np.full(a.shape[0], np.nan)
    for i in range(a.shape[0]):
        x, y = np.abs(a[i]).ravel(), np.abs(b[i]).ravel()
        if np.ptp(x) == 0 or np.ptp(y) == 0:
            continue
        out[i] = float(spearmanr(x, y).statistic)
    return out
