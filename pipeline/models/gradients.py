"""Per-sample gradients of a network's final ``nn.Linear`` head, as Fishr takes them (pipeline/algorithms/fishr.py).

Neutral: train's Fishr distance (pipeline/train/monitor.py) and the audit's landscape
(pipeline/audit/landscape/curvature.py) both use it. The parameter vector is laid out as Fishr lays it out
(docs/design/fishr.md step 3): bias first, then the weight flattened row-major, so P = K + K * F for W: (K, F).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def head_gradients(head: nn.Linear, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-sample gradients g_i = [dl_i/db, dl_i/dW flattened] (B, P) of l_i = CE(head(z_i), y_i), via BackPACK's
    ``BatchGrad`` exactly as Fishr takes them (pipeline/algorithms/fishr.py), on a copy of ``head`` (the caller's
    module is never extended). ``z`` (B, F) float32, ``y`` (B,) int64. No graph is kept."""
    from backpack import backpack, extend
    from backpack.extensions import BatchGrad

    local = extend(copy.deepcopy(head).float().to(z.device))
    loss_fn = extend(nn.CrossEntropyLoss(reduction="none"))
    params = [p for _, p in sorted(local.named_parameters())]  # bias before weight
    # the head's input is differentiated too: BackPACK's full backward hook wants an input that requires grad
    z = z.detach().float().requires_grad_(True)
    with torch.enable_grad(), backpack(BatchGrad()):
        torch.autograd.grad(loss_fn(local(z), y).sum(), [z, *params])
    return torch.cat([p.grad_batch.reshape(len(y), -1) for p in params], dim=1).detach()
