"""GroupDRO (Sagawa et al. 2020, Algorithm 1), DomainBed's version: exponentiated-gradient weights q over domains,
the loss is the q-weighted sum of the per-domain risks (the worst domain gets the most weight).

Under torchrun the group losses are the union batch's (mean over ranks of equal shards' risks, all-reduced keeping
the local graph), so q moves identically on every rank and equals the single-process weights."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.algorithms.base import Algorithm, Minibatches
from pipeline.algorithms.collective import mean_across_ranks
from pipeline.algorithms.hparams import HParams, hparam
from pipeline.algorithms.registry import register_algorithm


@dataclass(frozen=True)
class GroupDROHParams(HParams):
    MIN_DOMAINS: ClassVar[int] = 2
    MIN_DOMAINS_WHY: ClassVar[str] = "the weight of a single domain is always 1: plain ERM"

    groupdro_eta: float = hparam(1e-2, search=lambda r: 10 ** r.uniform(-3, -1), gt=0,
                                 why="0 keeps the domain weights uniform (plain ERM), a negative step favours the "
                                     "easiest domain")


def update_group_weights(q: torch.Tensor, losses: torch.Tensor, eta: float) -> torch.Tensor:
    """q_m <- q_m * exp(eta * loss_m), then normalised to sum 1 (losses detached)."""
    q = q * torch.exp(eta * losses.detach())
    return q / q.sum()


@register_algorithm("groupdro")
class GroupDRO(Algorithm[GroupDROHParams]):
    HPARAMS = GroupDROHParams
    PER_DOMAIN_FORWARD = True

    def __init__(self, featurizer: nn.Module, classifier: nn.Module, num_domains: int,
                 hparams: GroupDROHParams) -> None:
        super().__init__(featurizer, classifier, num_domains, hparams)
        # DomainBed starts from ones (unnormalised); a buffer so that resuming keeps it
        self.register_buffer("q", torch.ones(num_domains))

    def update(self, minibatches: Minibatches) -> dict[str, float]:
        if len(minibatches) != self.num_domains:
            raise ValueError(f"groupdro: update needs one minibatch per domain ({self.num_domains}), "
                             f"got {len(minibatches)}")
        # one forward per domain, as DomainBed (BatchNorm statistics per domain)
        losses = mean_across_ranks(torch.stack([F.cross_entropy(self.predict(x), y) for x, y in minibatches]))
        with torch.no_grad():
            self.q.copy_(update_group_weights(self.q, losses, self.hparams.groupdro_eta))
        loss = torch.dot(losses, self.q.to(losses.dtype))

        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.update_count += 1
        return {"loss": loss.item(), "nll": losses.mean().item()}
