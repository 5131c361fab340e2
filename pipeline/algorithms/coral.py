"""Deep CORAL (Sun & Saenko 2016), DomainBed's version: ERM + mmd_gamma * mean over domain pairs of the squared
distance between feature means plus the squared distance between feature covariances (both averaged over entries).

Under torchrun each domain's mean and covariance are those of the union batch over ranks: count, the sum and the sum
of outer products of features (shifted by the detached global mean) are all-reduced keeping the local graph."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from pipeline.algorithms.base import Algorithm, Minibatches
from pipeline.algorithms.collective import mean_across_ranks, sum_across_ranks, sum_across_ranks_detached, world_size
from pipeline.algorithms.hparams import HParams, hparam
from pipeline.algorithms.registry import register_algorithm


@dataclass(frozen=True)
class CORALHParams(HParams):
    MIN_DOMAINS: ClassVar[int] = 2
    MIN_DOMAINS_WHY: ClassVar[str] = "the penalty compares pairs of domains, identically 0 with one domain"

    batch_size: int = hparam(32, search=lambda r: int(2 ** r.uniform(3, 5.5)), ge=2,
                             why="the per-domain feature covariance divides by batch_size - 1")
    mmd_gamma: float = hparam(1.0, search=lambda r: 10 ** r.uniform(-1, 1), gt=0,
                              why="0 trains plain ERM, a negative weight rewards unequal feature statistics")


def coral_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """mean((mu_a - mu_b)^2) + mean((C_a - C_b)^2), C the unbiased covariance of the rows' features."""
    mean_a, mean_b = a.mean(0, keepdim=True), b.mean(0, keepdim=True)
    cent_a, cent_b = a - mean_a, b - mean_b
    cova_a = (cent_a.t() @ cent_a) / (len(a) - 1)
    cova_b = (cent_b.t() @ cent_b) / (len(b) - 1)
    return (mean_a - mean_b).pow(2).mean() + (cova_a - cova_b).pow(2).mean()


def global_mean_cov(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (1, D) and unbiased covariance (D, D) of the rows of ``features`` (N, D) over every rank's rows."""
    count = sum_across_ranks_detached(features.new_tensor(float(len(features))))
    shift = sum_across_ranks_detached(features.detach().sum(0, keepdim=True)) / count  # detached: precision only
    centred = features - shift
    first = sum_across_ranks(centred.sum(0, keepdim=True))
    second = sum_across_ranks(centred.t() @ centred)
    mean_offset = first / count
    cov = (second - count * mean_offset.t() @ mean_offset) / (count - 1)
    return shift + mean_offset, cov


def global_coral_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``coral_distance`` over the union batch of every rank (the same function in one process)."""
    if world_size() == 1:
        return coral_distance(a, b)
    (mean_a, cova_a), (mean_b, cova_b) = global_mean_cov(a), global_mean_cov(b)
    return (mean_a - mean_b).pow(2).mean() + (cova_a - cova_b).pow(2).mean()


@register_algorithm("coral")
class CORAL(Algorithm[CORALHParams]):
    HPARAMS = CORALHParams
    PER_DOMAIN_FORWARD = True

    def update(self, minibatches: Minibatches) -> dict[str, float]:
        # one forward per domain, as DomainBed (BatchNorm statistics per domain)
        features = [self.featurizer(x) for x, _ in minibatches]
        n = len(minibatches)
        risks = [mean_across_ranks(F.cross_entropy(self.classifier(f), y))
                 for f, (_, y) in zip(features, minibatches, strict=True)]
        nll = sum(risks) / n
        penalty = features[0].new_zeros(())
        for i in range(n):
            for j in range(i + 1, n):
                penalty = penalty + global_coral_distance(features[i], features[j])
        if n > 1:
            penalty = penalty / (n * (n - 1) / 2)
        loss = nll + self.hparams.mmd_gamma * penalty

        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.update_count += 1
        return {"loss": loss.item(), "nll": nll.item(), "penalty": penalty.item()}
