"""IRM (Arjovsky et al. 2019), DomainBed's IRMv1: the squared gradient of the risk w.r.t. a dummy scale on the
logits, estimated without bias as the product of the gradients on the even and odd halves of each domain's batch.

Under torchrun each half's gradient is the union batch's: every rank holds an equal contiguous shard of even size
(the trainer checks it), so a local row's parity is its global parity and the half-gradients (means) are averaged
over ranks keeping the local graph."""

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
class IRMHParams(HParams):
    MIN_DOMAINS: ClassVar[int] = 2
    MIN_DOMAINS_WHY: ClassVar[str] = "invariance across a single domain constrains nothing"

    batch_size: int = hparam(32, search=lambda r: int(2 ** r.uniform(3, 5.5)), ge=2,
                             why="the penalty multiplies the gradients of each domain's even and odd halves; "
                                 "with 1 sample the odd half is empty and the penalty identically 0")
    irm_lambda: float = hparam(1e2, search=lambda r: 10 ** r.uniform(-1, 5), gt=0,
                               why="0 trains plain ERM after annealing, a negative weight rewards non-invariance")
    irm_penalty_anneal_iters: int = hparam(500, search=lambda r: int(10 ** r.uniform(0, 4)), ge=0,
                                           why="a number of steps")


def irm_penalty(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """grad_s CE(s * logits[::2]) * grad_s CE(s * logits[1::2]) at s = 1 (differentiable)."""
    scale = torch.ones((), device=logits.device, dtype=logits.dtype, requires_grad=True)
    loss_1 = F.cross_entropy(logits[::2] * scale, y[::2])
    loss_2 = F.cross_entropy(logits[1::2] * scale, y[1::2])
    grad_1 = mean_across_ranks(torch.autograd.grad(loss_1, [scale], create_graph=True)[0])
    grad_2 = mean_across_ranks(torch.autograd.grad(loss_2, [scale], create_graph=True)[0])
    return torch.sum(grad_1 * grad_2)


@register_algorithm("irm")
class IRM(Algorithm[IRMHParams]):
    HPARAMS = IRMHParams

    def update(self, minibatches: Minibatches) -> dict[str, float]:
        hp = self.hparams
        step = int(self.update_count)
        # DomainBed's schedule: weight 1 (not 0) before annealing ends
        weight = hp.irm_lambda if step >= hp.irm_penalty_anneal_iters else 1.0
        all_logits = self.predict(torch.cat([x for x, _ in minibatches]))
        nll = all_logits.new_zeros(())
        penalty = all_logits.new_zeros(())
        splits = torch.split(all_logits, [len(y) for _, y in minibatches])
        for logits, (_, y) in zip(splits, minibatches, strict=True):
            nll = nll + mean_across_ranks(F.cross_entropy(logits, y))
            penalty = penalty + irm_penalty(logits, y)
        nll = nll / len(minibatches)
        penalty = penalty / len(minibatches)
        loss = nll + weight * penalty

        if step == hp.irm_penalty_anneal_iters:
            self.optimizer = self.make_optimizer(self.parameters())  # Adam dislikes the jump in gradient scale
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.update_count += 1
        return {"loss": loss.item(), "nll": nll.item(), "penalty": penalty.item()}
