"""V-REx (Krueger et al. 2021): mean risk + weight * variance of the per-domain risks (DomainBed's version).

Under torchrun each domain's risk is the union batch's (the mean over ranks of equal shards' risks, all-reduced
keeping the local graph), so nll and penalty equal the single-process values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from pipeline.algorithms.base import Algorithm, Minibatches
from pipeline.algorithms.collective import mean_across_ranks
from pipeline.algorithms.hparams import HParams, hparam
from pipeline.algorithms.registry import register_algorithm


@dataclass(frozen=True)
class VRExHParams(HParams):
    MIN_DOMAINS: ClassVar[int] = 2
    MIN_DOMAINS_WHY: ClassVar[str] = "the penalty is the variance of the per-domain risks, identically 0 with " \
                                     "one domain"

    vrex_lambda: float = hparam(1e1, search=lambda r: 10 ** r.uniform(-1, 5), gt=0,
                                why="0 trains plain ERM after annealing, a negative weight rewards unequal risks")
    vrex_penalty_anneal_iters: int = hparam(500, search=lambda r: int(10 ** r.uniform(0, 4)), ge=0,
                                            why="a number of steps")


def vrex_penalty(losses: torch.Tensor) -> torch.Tensor:
    """Biased variance of the per-domain risks."""
    return ((losses - losses.mean()) ** 2).mean()


@register_algorithm("vrex")
class VREx(Algorithm[VRExHParams]):
    HPARAMS = VRExHParams

    def update(self, minibatches: Minibatches) -> dict[str, float]:
        hp = self.hparams
        step = int(self.update_count)
        # DomainBed's schedule: weight 1 (not 0) before annealing ends
        weight = hp.vrex_lambda if step >= hp.vrex_penalty_anneal_iters else 1.0
        all_logits = self.predict(torch.cat([x for x, _ in minibatches]))
        splits = torch.split(all_logits, [len(y) for _, y in minibatches])
        losses = mean_across_ranks(torch.stack([F.cross_entropy(logits, y)
                                                for logits, (_, y) in zip(splits, minibatches, strict=True)]))
        nll = losses.mean()
        penalty = vrex_penalty(losses)
        loss = nll + weight * penalty

        if step == hp.vrex_penalty_anneal_iters:
            self.optimizer = self.make_optimizer(self.parameters())  # as IRM
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.update_count += 1
        # DomainBed logs the last domain's risk as "nll"; we log the mean risk that the objective uses.
        return {"loss": loss.item(), "nll": nll.item(), "penalty": penalty.item()}
