"""Data-parallel training under torchrun (PyTorch DDP semantics, manual gradient all-reduce).

Under ``torchrun`` the environment carries RANK, WORLD_SIZE and LOCAL_RANK. Every rank builds the same model from
the same seed (parameters and buffers are then broadcast from rank 0, as DDP does) and reads the same global stream
of each domain's minibatches (one data seed per domain, not per rank); each rank takes its contiguous
``batch_size / world_size`` shard of every global batch (``DomainBatchSampler.shard``). Before every optimizer step
(any optimizer: the main one, re-created ones, DANN's discriminator, Fish's inner Adam) parameter gradients are
averaged over ranks, which is what DistributedDataParallel does; we do it with an optimizer step hook because the
algorithms call their featurizer and head directly (DomainBed's ``update``) and BackPACK extends the head only, so a
DDP wrapper's forward would never run. The algorithms' batch statistics are all-reduced in
``pipeline/algorithms/collective.py``. Only rank 0 evaluates, writes checkpoints, history and selected models, and
shows a progress bar.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass

import torch

from pipeline.errors import ConfigError
from pipeline.seeding import seed_hash

# IRM's penalty multiplies the gradients of each domain's even and odd rows: a shard must keep global parity
EVEN_SHARD_ALGORITHMS = ("irm",)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None:
        return default
    try:
        return int(text)
    except ValueError:
        raise ConfigError(f"train: environment variable {name} must be an integer (set by torchrun), got {text!r}. "
                          "Launch with torchrun or `cxr-fishr train --nproc N`, or unset it.") from None


def dist_info() -> DistInfo:
    return DistInfo(rank=_env_int("RANK", 0), world_size=_env_int("WORLD_SIZE", 1),
                    local_rank=_env_int("LOCAL_RANK", 0))


def data_seed(seed: int, domain: str, info: DistInfo) -> int:
    """The seed of one domain's global batch stream (stable: adding a domain never shifts another's). The same on
    every rank: ranks read disjoint shards of one stream, so the union batch is the single-process batch."""
    del info  # kept in the signature: the stream is global, the shard is per rank
    return seed_hash(seed, "data", domain, 0)


def check_shards(*, batch_size: int, algorithm: str, info: DistInfo) -> None:
    """ConfigError unless every rank gets an equal shard of each domain's batch (and an even one for IRM)."""
    if info.world_size == 1:
        return
    multiple = info.world_size * (2 if algorithm in EVEN_SHARD_ALGORITHMS else 1)
    if batch_size % multiple:
        why = " times 2 (IRM splits each shard into even and odd rows)" if multiple != info.world_size else ""
        raise ConfigError(
            f"train: hparams.batch_size must be a multiple of the number of processes {info.world_size}{why} so "
            f"that each rank holds an equal shard of every domain's minibatch, got {batch_size}. Set batch_size to "
            f"a multiple of {multiple}, or change --nproc."
        )


def resolve_rank_device(device: torch.device, info: DistInfo) -> torch.device:
    """cuda -> cuda:LOCAL_RANK under torchrun (one GPU per process); cpu unchanged."""
    if device.type == "cuda" and info.world_size > 1:
        torch.cuda.set_device(info.local_rank)
        return torch.device("cuda", info.local_rank)
    return device


@contextlib.contextmanager
def process_group(device: torch.device, info: DistInfo) -> Iterator[None]:
    """Initialise the default process group (NCCL on CUDA, gloo on CPU) for a multi-process run; destroy it after.
    A no-op in one process, or when the caller already initialised one."""
    import torch.distributed as dist

    if info.world_size == 1 or dist.is_initialized():
        yield
        return
    dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def broadcast_state(module: torch.nn.Module) -> None:
    """Parameters and buffers of rank 0 on every rank (DDP's start: replicas start bit-for-bit equal)."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)


def _average_gradients(optimizer: torch.optim.Optimizer, args, kwargs) -> None:
    """Step pre-hook: every parameter gradient of ``optimizer`` becomes its mean over ranks (one flat all-reduce)."""
    import torch.distributed as dist
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    if not grads:
        return
    flat = _flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    for grad, reduced in zip(grads, _unflatten_dense_tensors(flat, grads), strict=True):
        grad.copy_(reduced)


@contextlib.contextmanager
def gradient_averaging(info: DistInfo) -> Iterator[None]:
    """Average gradients over ranks before every optimizer step in this process, for the duration of the block."""
    if info.world_size == 1:
        yield
        return
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    handle = register_optimizer_step_pre_hook(_average_gradients)
    try:
        yield
    finally:
        handle.remove()


def mean_terms(terms: dict[str, float], info: DistInfo, device: torch.device) -> dict[str, float]:
    """Loss terms averaged over ranks (each rank's term is a mean over an equal shard: the union batch's value)."""
    if info.world_size == 1 or not terms:
        return terms
    import torch.distributed as dist

    values = torch.tensor(list(terms.values()), dtype=torch.float64, device=device)
    dist.all_reduce(values)
    values /= info.world_size
    return dict(zip(terms, values.tolist(), strict=True))


def barrier(info: DistInfo) -> None:
    if info.world_size > 1:
        import torch.distributed as dist

        dist.barrier()
