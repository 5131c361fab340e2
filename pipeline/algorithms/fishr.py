"""Fishr (Rame et al., ICML 2022): match the per-domain variances of the head's per-sample gradients.

Exactly docs/design/fishr.md (the authors' DomainBed numbers). Per-sample gradients come from BackPACK on
the linear head only. BackPACK >= 1.4 registers *full* backward hooks, which never fire when the backward is
restricted to the head's parameters while the features require grad (the reference code then fails with a missing
``grad_batch``); we differentiate with respect to the head's input as well, so the hook fires.

Scaling out (DDP): ``DomainGradStats`` holds per domain (count, sum g, sum g^2) of gradients shifted by a detached
per-domain reference. Variance is shift-invariant, so a distributed version (1) all-reduces each domain's count and
detached gradient sum to agree on the shift (the global mean), (2) all-reduces ``sum`` and ``sum_sq`` with
``torch.distributed.nn.functional.all_reduce`` (keeps the local autograd graph), and (3) calls ``variance()``: v_e is
then the variance over the global batch. In one process the shift is the local mean, so ``sum`` ~ 0 and no precision
is lost; under torchrun it is the global mean (``global_domain_grad_stats``), so the penalty equals the
single-process penalty on the union batch (tests/train/test_ddp_exact.py).

Schedules. The penalty's weight is ``lambda`` from step ``penalty_anneal_iters`` on and ``warmup_penalty_weight``
before. The defaults are DomainBed's Fishr (``domainbed/algorithms.py`` of the authors' repository, the numbers of
docs/design/fishr.md): weight 0 before the switch, and Adam re-created at the switch (``optimizer_reset``). The
paper's Colored MNIST protocol (Rame et al. 2022, appendix; the authors' ``coloredmnist/train_coloredmnist.py`` in
github.com/alexrame/fishr, itself IRM's ``code/colored_mnist/main.py`` with the Fishr penalty added) differs in
three ways, each an hparam here:

- ``penalty_weight = (flags.penalty_weight if step >= flags.penalty_anneal_iters else 1.0)``: weight 1, not 0,
  before the switch (``warmup_penalty_weight: 1.0``);
- one ``optim.Adam`` for the whole run, never re-created (``optimizer_reset: false``);
- ``if penalty_weight > 1.0: loss /= penalty_weight`` ("rescale the entire loss to keep gradients in a reasonable
  range"), the L2 term included (``loss_rescale: true``; here weight decay lives in Adam and is not rescaled).

That script has no moving average of the variances (the DomainBed code has): ``ema`` stays as configured.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.algorithms.base import Algorithm, Minibatches
from pipeline.algorithms.collective import sum_across_ranks, sum_across_ranks_detached, world_size
from pipeline.algorithms.hparams import HParams, hparam
from pipeline.algorithms.registry import register_algorithm


@dataclass(frozen=True)
class FishrHParams(HParams):
    MIN_DOMAINS: ClassVar[int] = 2
    MIN_DOMAINS_WHY: ClassVar[str] = "the penalty is the spread across domains of the gradient variances, " \
                                     "identically 0 with one domain"

    batch_size: int = hparam(32, search=lambda r: int(2 ** r.uniform(3, 5.5)), ge=2,
                             why="the per-domain gradient variance is undefined for 1 sample")
    lam: float = hparam(1000.0, name="lambda", search=lambda r: 10 ** r.uniform(1.0, 4.0), gt=0,
                        why="0 trains plain ERM, a negative weight rewards unequal gradient variances")
    penalty_anneal_iters: int = hparam(1500, search=lambda r: int(r.uniform(0.0, 5000.0)), ge=0,
                                       why="a number of steps")
    ema: float = hparam(0.95, search=lambda r: r.uniform(0.90, 0.99), ge=0, lt=1,
                        why="the moving average is divided by 1 - ema")
    # The paper's Colored MNIST schedule (module docstring). Not searched: DomainBed's random search keeps its own
    # schedule, and a draw takes these defaults.
    warmup_penalty_weight: float = hparam(0.0, ge=0,
                                          why="a negative weight rewards unequal gradient variances")
    optimizer_reset: bool = hparam(True)
    loss_rescale: bool = hparam(False)

    # Left out of to_dict() at their defaults: the run directories and sweep hashes of configs written before these
    # options existed stay byte-identical (as model.final_norm does in pipeline/models/network.py).
    OMITTED_AT_DEFAULT: ClassVar[tuple[str, ...]] = ("warmup_penalty_weight", "optimizer_reset", "loss_rescale")

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        for f in dataclasses.fields(self):
            if f.name in self.OMITTED_AT_DEFAULT and getattr(self, f.name) == f.default:
                data.pop(f.name)
        return data

    def penalty_weight(self, step: int) -> float:
        """The penalty's weight at ``step`` (0-based): ``lambda`` from ``penalty_anneal_iters`` on, the warm-up
        weight before (0 in DomainBed, 1 in the paper's Colored MNIST code)."""
        return self.lam if step >= self.penalty_anneal_iters else self.warmup_penalty_weight

    def inactive_penalty(self, *, steps: int, algorithm: str) -> str | None:
        if self.penalty_anneal_iters < steps:
            return None
        if self.warmup_penalty_weight == 0.0:
            return (f"{algorithm}: hparam penalty_anneal_iters {self.penalty_anneal_iters} >= steps {steps}: the "
                    "penalty never switches on and the run is plain ERM. Lower penalty_anneal_iters or train longer.")
        return (f"{algorithm}: hparam penalty_anneal_iters {self.penalty_anneal_iters} >= steps {steps}: the penalty "
                f"keeps its warm-up weight {self.warmup_penalty_weight} for the whole run and lambda {self.lam} is "
                "never used. Lower penalty_anneal_iters or train longer.")


@dataclass
class DomainGradStats:
    """Sufficient statistics of per-sample gradients per domain: count (E,), sum and sum_sq (E, P) of g - shift."""

    count: torch.Tensor
    sum: torch.Tensor
    sum_sq: torch.Tensor

    def variance(self) -> torch.Tensor:
        """Diagonal, centred, biased variance per domain (E, P)."""
        n = self.count.to(self.sum.dtype).unsqueeze(1)
        return self.sum_sq / n - (self.sum / n) ** 2


def domain_grad_stats(grads: torch.Tensor, sizes: list[int], shift: torch.Tensor | None = None) -> DomainGradStats:
    """(count, sum, sum_sq) per domain of ``grads`` (B, P), the rows of each domain contiguous, in domain order,
    shifted by ``shift`` (E, P, detached; default each domain's local mean)."""
    counts, sums, sums_sq = [], [], []
    for e, g in enumerate(torch.split(grads, sizes)):
        shifted = g - (g.detach().mean(dim=0, keepdim=True) if shift is None else shift[e].unsqueeze(0))
        counts.append(g.shape[0])
        sums.append(shifted.sum(dim=0))
        sums_sq.append(shifted.pow(2).sum(dim=0))
    return DomainGradStats(torch.tensor(counts, device=grads.device), torch.stack(sums), torch.stack(sums_sq))


def global_domain_grad_stats(grads: torch.Tensor, sizes: list[int]) -> DomainGradStats:
    """``domain_grad_stats`` over the union of every rank's rows (steps 1-2 of the module docstring); local in one
    process. Counts and the shift are all-reduced outside autograd, ``sum``/``sum_sq`` keep the local graph."""
    if world_size() == 1:
        return domain_grad_stats(grads, sizes)
    counts = sum_across_ranks_detached(torch.tensor(sizes, device=grads.device, dtype=grads.dtype))
    totals = sum_across_ranks_detached(torch.stack([g.sum(dim=0) for g in torch.split(grads.detach(), sizes)]))
    local = domain_grad_stats(grads, sizes, shift=totals / counts.unsqueeze(1))
    return DomainGradStats(counts.round().long(), sum_across_ranks(local.sum), sum_across_ranks(local.sum_sq))


@register_algorithm("fishr")
class Fishr(Algorithm[FishrHParams]):
    """ERM + lambda * distance between per-domain variances of head gradients (moving averages per domain).

    ``update`` returns ``loss`` (the objective backpropagated, divided by the weight under ``loss_rescale``), ``nll``
    (mean cross-entropy over the concatenated batch) and ``penalty`` (unweighted)."""

    HPARAMS = FishrHParams

    def __init__(self, featurizer: nn.Module, classifier: nn.Module, num_domains: int, hparams: FishrHParams) -> None:
        from backpack import extend

        super().__init__(featurizer, classifier, num_domains, hparams)
        extend(self.classifier)  # BackPACK on the head only: BatchNorm in the backbone has no per-sample gradient
        self.per_sample_loss = extend(nn.CrossEntropyLoss(reduction="none"))
        num_head_params = sum(p.numel() for p in self.classifier.parameters())
        # s_e of docs/design/fishr.md step 5, a buffer so that state_dict() carries it across a resume
        self.register_buffer("grad_var_ema", torch.zeros(num_domains, num_head_params))

    def update(self, minibatches: Minibatches) -> dict[str, float]:
        if len(minibatches) != self.num_domains:
            raise ValueError(f"fishr: update needs one minibatch per domain ({self.num_domains}), "
                             f"got {len(minibatches)}")
        step = int(self.update_count)
        x = torch.cat([x for x, _ in minibatches])
        y = torch.cat([y for _, y in minibatches])
        hp = self.hparams
        weight = hp.penalty_weight(step)
        features = self.featurizer(x)
        # The head and its per-sample gradients in float32 even under bf16 autocast (a no-op in float32).
        with torch.autocast(features.device.type, enabled=False):
            z = features.float() if features.dtype in (torch.float16, torch.bfloat16) else features
            logits = self.classifier(z)
            nll = F.cross_entropy(logits, y)
            # With weight 0 the penalty's gradient would be multiplied by 0: skip its double backward (same numbers)
            penalty = self.penalty(z, logits, y, [len(y_e) for _, y_e in minibatches],
                                   differentiable=weight != 0.0)
        if hp.optimizer_reset and step == hp.penalty_anneal_iters != 0:
            self.optimizer = self.make_optimizer(self.parameters())  # Adam dislikes the jump in gradient scale

        objective = nll + weight * penalty
        if hp.loss_rescale and weight > 1.0:
            # the paper's alternative to the reset: the gradients keep their scale, so Adam's moments stay valid
            objective = objective / weight
        self.optimizer.zero_grad()
        objective.backward()
        self.optimizer.step()
        self.update_count += 1
        return {"loss": objective.item(), "nll": nll.item(), "penalty": penalty.item()}

    def penalty(self, z: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, sizes: list[int],
                differentiable: bool = True) -> torch.Tensor:
        """docs/design/fishr.md steps 3-6; updates the moving averages as a side effect."""
        grads = self.per_sample_head_grads(z, logits, y, create_graph=differentiable)
        if not differentiable:
            grads = grads.detach()
        variance = global_domain_grad_stats(grads, sizes).variance()
        return self.penalty_from_variance(variance)

    def per_sample_head_grads(self, z: torch.Tensor, logits: torch.Tensor, y: torch.Tensor,
                              create_graph: bool = True) -> torch.Tensor:
        """g_i = [dl_i/db, dl_i/dW flattened] (B, P), l_i the un-averaged cross-entropy, via BackPACK."""
        from backpack import backpack
        from backpack.extensions import BatchGrad

        params = [p for _, p in sorted(self.classifier.named_parameters())]  # bias before weight, as docs/design/fishr.md
        # The head's input must be among the differentiated tensors or BackPACK's full backward hook never fires.
        inputs = ([z] if z.requires_grad else []) + params
        with backpack(BatchGrad()):
            torch.autograd.grad(self.per_sample_loss(logits, y).sum(), inputs, create_graph=create_graph,
                                retain_graph=True)
        grads = torch.cat([p.grad_batch.reshape(len(y), -1) for p in params], dim=1)
        for p in params:
            del p.grad_batch  # drop the graph it holds
        return grads

    def penalty_from_variance(self, variance: torch.Tensor) -> torch.Tensor:
        """EMA per domain (stored detached, used divided by 1 - ema), then the mean squared deviation over domains."""
        ema = self.hparams.ema
        smoothed = ema * self.grad_var_ema + (1.0 - ema) * variance
        with torch.no_grad():
            self.grad_var_ema.copy_(smoothed)
        corrected = smoothed / (1.0 - ema)
        return (corrected - corrected.mean(dim=0, keepdim=True)).pow(2).mean()
