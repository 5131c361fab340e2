"""Cross-rank reductions for the algorithms' batch statistics under torchrun (identities in a single process).

Exactness argument (docs/train.md, "Distributed training"): every rank holds an equal contiguous shard of each
domain's global minibatch, and the trainer averages parameter gradients over ranks before every optimizer step.
A statistic that is a sum over samples is all-reduced with ``sum_across_ranks`` (differentiable: its backward
all-reduces the upstream gradient, so each rank receives ``world_size`` times the gradient of its own contribution,
and the gradient average over ranks equals the gradient of the single-process objective on the union batch).
A per-domain mean over a shard becomes the union batch's mean with ``mean_across_ranks`` (equal shard sizes).
"""

from __future__ import annotations

import torch


def world_size() -> int:
    """Number of ranks of the default process group (1 when torch.distributed is not initialised)."""
    import torch.distributed as dist

    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def sum_across_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks keeping the local autograd graph (``torch.distributed.nn.functional.all_reduce``)."""
    if world_size() == 1:
        return tensor
    import warnings

    from torch.distributed.nn.functional import all_reduce

    # deprecated in favour of _functional_collectives.all_reduce, which has no backward: this one is the
    # differentiable all-reduce (its backward all-reduces the upstream gradient)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return all_reduce(tensor)


def mean_across_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """Mean over ranks of a per-rank mean over an equal-sized shard: the union batch's mean (differentiable)."""
    n = world_size()
    return tensor if n == 1 else sum_across_ranks(tensor) / n


@torch.no_grad()
def sum_across_ranks_detached(tensor: torch.Tensor) -> torch.Tensor:
    """Sum over ranks of a tensor outside autograd (counts, the shift of a shifted sum); a new tensor."""
    out = tensor.detach().clone()
    if world_size() > 1:
        import torch.distributed as dist

        dist.all_reduce(out)
    return out
