"""Per-sample head gradients, the head's exact Hessian diagonal, and Hutchinson's estimate of the whole network's
Hessian trace (docs/audit.md, "Same landscape at every hospital?").

The head is the network's final ``nn.Linear`` (W: (K, F), b: (K,)), the loss the softmax cross-entropy. Parameter
vectors are laid out as Fishr lays them out (docs/design/fishr.md step 3): bias first, then the weight flattened
row-major, so P = K + K * F.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.models.gradients import head_gradients

__all__ = ["head_gradients", "head_hessian_diagonal", "hutchinson_trace"]


def head_hessian_diagonal(logits: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """Per-sample exact Hessian diagonal (B, P) of CE(W z + b, y) in (b, W): with p = softmax(logits),
    d2l/db_k^2 = p_k (1 - p_k) and d2l/dW_kj^2 = p_k (1 - p_k) z_j^2 (independent of the label y).
    ``logits`` (B, K), ``z`` (B, F)."""
    p = torch.softmax(logits.detach().float(), dim=1)
    curvature = p * (1.0 - p)                                     # (B, K)
    weight = curvature[:, :, None] * z.detach().float()[:, None, :] ** 2  # (B, K, F)
    return torch.cat([curvature, weight.reshape(len(z), -1)], dim=1)


def backpack_head_hessian_diagonal(head: nn.Linear, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The mean loss's Hessian diagonal (P,) from BackPACK's ``DiagHessian`` (the check on the closed form)."""
    from backpack import backpack, extend
    from backpack.extensions import DiagHessian

    local = extend(copy.deepcopy(head).float().to(z.device))
    loss_fn = extend(nn.CrossEntropyLoss(reduction="mean"))
    params = [p for _, p in sorted(local.named_parameters())]
    z = z.detach().float().requires_grad_(True)
    with backpack(DiagHessian()):
        torch.autograd.grad(loss_fn(local(z), y), [z, *params])
    return torch.cat([p.diag_h.reshape(-1) for p in params]).detach()


@dataclass(frozen=True)
class TraceEstimate:
    """Hutchinson's estimate of tr(H) of the mean loss: ``mean`` over ``probes`` Rademacher probes, ``se`` its
    standard error (std / sqrt(probes); None with one probe)."""

    mean: float
    se: float | None
    probes: int


def hessian_vector_product(network: nn.Module, x: torch.Tensor, y: torch.Tensor,
                           vector: dict[str, torch.Tensor], batch_size: int) -> dict[str, torch.Tensor]:
    """H v of the SUMMED cross-entropy over (x, y) w.r.t. every trainable parameter (forward-over-reverse with
    ``torch.func``: jvp of the gradient), accumulated over chunks of ``batch_size`` images (H v is linear)."""
    from torch.func import functional_call, grad, jvp

    params = {k: p.detach() for k, p in network.named_parameters() if p.requires_grad}
    buffers = dict(network.named_buffers())

    def loss(p: dict[str, torch.Tensor], xb: torch.Tensor, yb: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(functional_call(network, (p, buffers), (xb,)).float(), yb, reduction="sum")

    total = {k: torch.zeros_like(p) for k, p in params.items()}
    for start in range(0, len(y), batch_size):
        xb, yb = x[start:start + batch_size], y[start:start + batch_size]
        _, hv = jvp(lambda p, xb=xb, yb=yb: grad(loss)(p, xb, yb), (params,), (vector,))
        for k in total:
            total[k] += hv[k]
    return total


def hutchinson_trace(network: nn.Module, x: torch.Tensor, y: torch.Tensor, *, probes: int, seed: int,
                     batch_size: int = 32) -> TraceEstimate:
    """tr(H) of the MEAN cross-entropy over (x (B, C, S, S), y (B,)) in every trainable parameter of ``network``
    (in its current train/eval mode): E[v^T H v] with Rademacher v (+-1). Cost: ``probes`` x (forward + backward +
    forward-mode pass) over the B images. Raises ValueError for probes < 1 or no images."""
    if probes < 1 or len(y) == 0:
        raise ValueError(f"hutchinson_trace: probes must be >= 1 and images >= 1, got {probes} and {len(y)}")
    generator = torch.Generator().manual_seed(seed)
    params = {k: p for k, p in network.named_parameters() if p.requires_grad}
    values = []
    for _ in range(probes):
        # drawn on the CPU (one seed, one answer on any device), then moved beside the parameters
        v = {k: (torch.randint(0, 2, p.shape, generator=generator) * 2 - 1).to(p) for k, p in params.items()}
        hv = hessian_vector_product(network, x, y, v, batch_size)
        values.append(sum(float((v[k] * hv[k]).sum()) for k in v) / len(y))
    mean = sum(values) / probes
    if probes < 2:
        return TraceEstimate(mean=mean, se=None, probes=probes)
    var = sum((t - mean) ** 2 for t in values) / (probes - 1)
    return TraceEstimate(mean=mean, se=math.sqrt(var / probes), probes=probes)
