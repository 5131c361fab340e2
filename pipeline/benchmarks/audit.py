"""`cxr-fishr bench audit`: seconds per image per attribution method (demo resolution and 224 px, 2 threads) and
the cost of Integrated Gradients relative to n_steps forward+backward passes (should be close to 1)."""

from __future__ import annotations

import math
import time
from typing import Any

DEMO_SIZE = 128


def _timed(fn, repeats: int = 2) -> float:
    fn()  # warm-up (allocator, lazy init)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def run(quick: bool = False, backbone: str = "resnet10t", threads: int = 2) -> dict[str, Any]:
    import torch

    from pipeline.audit.attribute import attribute, prepare_network
    from pipeline.audit.config import ALL_METHODS, AuditConfig
    from pipeline.models import ModelConfig, build_network

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    sizes = (64,) if quick else (DEMO_SIZE, 224)
    n_images = 2 if quick else 4
    cfg = AuditConfig(ig_steps=8 if quick else 32, internal_batch_size=64)
    net = prepare_network(build_network(ModelConfig(backbone=backbone)))
    results: dict[str, Any] = {"backbone": backbone, "threads": threads, "images_per_call": n_images,
                               "ig_steps": cfg.ig_steps, "internal_batch_size": cfg.internal_batch_size,
                               "occlusion_window": cfg.occlusion_window, "occlusion_stride": cfg.occlusion_stride,
                               "seconds_per_image": {}, "ig_over_steps_x_forward_backward": {}}
    chunk = min(cfg.internal_batch_size, cfg.ig_steps * n_images)
    n_chunks = math.ceil(cfg.ig_steps * n_images / chunk)
    for size in sizes:
        x = torch.rand(n_images, 1, size, size)
        target = torch.zeros(n_images, dtype=torch.long)
        per_method = {}
        for method in ALL_METHODS:
            per_method[method] = _timed(lambda m=method, x=x, t=target: attribute(m, net, x, t, cfg), 2) / n_images
        results["seconds_per_image"][f"{size}px"] = per_method

        # IG = n_steps x (forward + backward w.r.t. the input) on the same images; Captum runs the n_steps x B
        # scaled inputs in chunks of internal_batch_size, so also compare with that many passes of one chunk.
        def forward_backward(inputs: torch.Tensor) -> None:
            xi = inputs.clone().requires_grad_(True)
            torch.autograd.grad(net(xi)[:, 0].sum(), xi)

        fb = _timed(lambda x=x: forward_backward(x), 3)
        fb_chunk = _timed(lambda size=size, c=chunk: forward_backward(torch.rand(c, 1, size, size)), 2)
        ig = _timed(lambda x=x, t=target: attribute("integrated_gradients", net, x, t, cfg), 2)
        results["ig_over_steps_x_forward_backward"][f"{size}px"] = {
            "ig_seconds": ig, "forward_backward_seconds": fb, "ratio": ig / (cfg.ig_steps * fb),
            "chunk_forward_backward_seconds": fb_chunk, "n_chunks": n_chunks,
            "ratio_vs_chunked_passes": ig / (n_chunks * fb_chunk)}
    results["target"] = ("ratio close to 1 (IG costs its n_steps gradient passes); below 1 when chunking batches "
                         "the steps better than one image batch does; ratio_vs_chunked_passes isolates Captum's "
                         "own overhead")
    return results
