"""Model inputs from the image cache, and batched inference (no gradient, bounded memory)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch import nn


def image_batch(images: np.ndarray, indices: Sequence[int] | np.ndarray) -> torch.Tensor:
    """Rows ``indices`` of a cache image array (N, S, S) as the network input (B, 1, S, S) float32, through
    ``pipeline.data.dataset.images_to_input`` (the conversion training uses), read in ascending order."""
    from pipeline.data.dataset import images_to_input

    idx = np.asarray(indices, dtype=np.int64)
    order = np.argsort(idx, kind="stable")  # memory maps read fastest in ascending order
    rows = np.empty((idx.size,) + tuple(images.shape[1:]), dtype=images.dtype)
    rows[order] = images[idx[order]]
    return images_to_input(rows)


def batches(n: int, batch_size: int) -> Iterator[slice]:
    for start in range(0, n, batch_size):
        yield slice(start, min(start + batch_size, n))


@torch.no_grad()
def predict_logits(network: nn.Module, x: torch.Tensor, batch_size: int = 64) -> torch.Tensor:
    network.eval()
    outs = [network(x[s]) for s in batches(x.shape[0], batch_size)]
    return torch.cat(outs) if outs else torch.empty(0, 2)


@torch.no_grad()
def predict_proba(
    network: nn.Module, images: np.ndarray, indices: Sequence[int] | np.ndarray, batch_size: int = 64,
    progress: str | None = None,
) -> np.ndarray:
    """P(label = 1) for the cache rows ``indices`` (float64, (N,)), loading ``batch_size`` images at a time."""
    from tqdm.auto import tqdm

    idx = np.asarray(indices, dtype=np.int64)
    out = np.empty(idx.size, dtype=np.float64)
    network.eval()
    chunks = list(batches(idx.size, batch_size))
    for s in tqdm(chunks, desc=progress, disable=progress is None, leave=False):
        logits = network(image_batch(images, idx[s]))
        out[s] = torch.softmax(logits.double(), dim=1)[:, 1].numpy()
    return out
