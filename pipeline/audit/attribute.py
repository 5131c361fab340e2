"""Attribution maps with Captum: one function per method, ``(network, x, target, config) -> (B, H, W) float64``.

Captum keeps the model in ``__init__`` and the data in ``attribute``; we wrap each method once here so the rest of
the audit sees plain numpy maps at input resolution (one channel).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from pipeline.audit.config import AuditConfig
from pipeline.errors import ConfigError

AttributionFn = Callable[[nn.Module, torch.Tensor, torch.Tensor, AuditConfig], np.ndarray]
METHODS: dict[str, AttributionFn] = {}


def register_method(name: str) -> Callable[[AttributionFn], AttributionFn]:
    def wrap(fn: AttributionFn) -> AttributionFn:
        METHODS[name] = fn
        return fn
    return wrap


def list_methods() -> list[str]:
    return sorted(METHODS)


def prepare_network(network: nn.Module) -> nn.Module:
    """An eval-mode copy with in-place activations switched off: Captum's hooks break on in-place ops on views
    (pytorch#61519, captum PR#837), and attribution must never change the caller's model."""
    net = copy.deepcopy(network).eval()
    for module in net.modules():
        if hasattr(module, "inplace") and isinstance(module.inplace, bool):
            module.inplace = False
    for p in net.parameters():
        p.requires_grad_(False)  # gradients w.r.t. the input only: less memory
    return net


def last_stage(network: nn.Module, image_size: int) -> nn.Module:
    """The featurizer's last stage with a spatial output (B, C, h, w): the last of timm's ``feature_info``
    modules (``layer4`` of a ResNet, ``stages.3`` of a ConvNeXt, ``body`` of a torchxrayvision DenseNet) whose
    output is 4-D; without ``feature_info``, the last top-level child with a 4-D output."""
    root = getattr(network, "featurizer", network)
    info = getattr(root, "feature_info", None)
    names = [entry["module"] for entry in info] if isinstance(info, list) and info else \
        [name for name, _ in root.named_children()]
    candidates = {name: root.get_submodule(name) for name in names}
    outputs: dict[str, tuple[int, ...]] = {}
    hooks = [module.register_forward_hook(lambda m, i, o, n=name: outputs.__setitem__(n, tuple(o.shape))
                                          if torch.is_tensor(o) else None)
             for name, module in candidates.items()]
    training = network.training
    network.eval()  # one probe image: no BatchNorm batch statistics, and running statistics left untouched
    try:
        with torch.no_grad():
            network(torch.zeros(1, 1, image_size, image_size))
    finally:
        network.train(training)
        for hook in hooks:
            hook.remove()
    spatial = [name for name in names if len(outputs.get(name, ())) == 4]
    if not spatial:
        raise ConfigError(f"audit: grad_cam needs a featurizer stage with a 4-D output, got none among {names}; "
                          "set grad_cam_layer to a convolutional module's dotted name.")
    return candidates[spatial[-1]]


def resolve_layer(network: nn.Module, dotted: str | None, image_size: int) -> nn.Module:
    if dotted is None:
        return last_stage(network, image_size)
    modules = dict(network.named_modules())
    if dotted not in modules:
        raise ConfigError(f"audit: grad_cam_layer must name a module of the network, got {dotted!r}. "
                          f"Some names: {[n for n in modules if n.count('.') <= 1][:30]}.")
    return modules[dotted]


def _to_numpy(attr: torch.Tensor) -> np.ndarray:
    return attr.detach().sum(dim=1).double().numpy()  # channel sum: one map per image


def ig_chunk_size(cfg: AuditConfig, *, n_images: int, device: torch.device) -> int:
    """Scaled inputs per forward+backward pass in Integrated Gradients (a multiple of ``n_images``).

    On a CPU one step of the images' own batch per pass: a bigger chunk is slower per image there (at 224 px a
    fixed 64 cost 1.77 x n_steps passes of the batch, README "Benchmarks"), so IG costs n_steps passes of the
    batch. On a GPU as many whole steps per pass as ``internal_batch_size`` (the memory bound) allows: bigger
    batches fill the device.
    """
    n_images = max(n_images, 1)
    steps_per_pass = 1 if device.type == "cpu" else max(1, cfg.internal_batch_size // n_images)
    return min(steps_per_pass, cfg.ig_steps) * n_images


@register_method("integrated_gradients")
def integrated_gradients(network: nn.Module, x: torch.Tensor, target: torch.Tensor, cfg: AuditConfig) -> np.ndarray:
    from captum.attr import IntegratedGradients

    # chunks bound memory: n_steps x batch inputs go through in chunks (captum#245, #538)
    attr = IntegratedGradients(network).attribute(
        x, baselines=torch.zeros_like(x), target=target, n_steps=cfg.ig_steps,
        internal_batch_size=ig_chunk_size(cfg, n_images=x.shape[0], device=x.device),
    )
    return _to_numpy(attr)


@register_method("saliency")
def saliency(network: nn.Module, x: torch.Tensor, target: torch.Tensor, cfg: AuditConfig) -> np.ndarray:
    from captum.attr import Saliency

    return _to_numpy(Saliency(network).attribute(x.clone().requires_grad_(True), target=target, abs=True))


@register_method("grad_cam")
def grad_cam(network: nn.Module, x: torch.Tensor, target: torch.Tensor, cfg: AuditConfig) -> np.ndarray:
    from captum.attr import LayerAttribution, LayerGradCam

    layer = resolve_layer(network, cfg.grad_cam_layer, x.shape[-1])
    attr = LayerGradCam(network, layer).attribute(x, target=target, relu_attributions=True)
    attr = LayerAttribution.interpolate(attr, tuple(x.shape[-2:]), interpolate_mode="bilinear")
    return _to_numpy(attr)


@register_method("occlusion")
def occlusion(network: nn.Module, x: torch.Tensor, target: torch.Tensor, cfg: AuditConfig) -> np.ndarray:
    from captum.attr import Occlusion

    size = x.shape[-1]
    window = max(1, round(cfg.occlusion_window * size))
    stride = max(1, round(cfg.occlusion_stride * size))
    attr = Occlusion(network).attribute(
        x, sliding_window_shapes=(1, window, window), strides=(1, stride, stride), baselines=0.0, target=target,
        perturbations_per_eval=max(1, cfg.internal_batch_size // max(1, x.shape[0])),
    )
    return _to_numpy(attr)


def attribute(method: str, network: nn.Module, x: torch.Tensor, target: torch.Tensor, cfg: AuditConfig) -> np.ndarray:
    """Maps (B, H, W) of ``method`` for ``network`` (already passed through :func:`prepare_network`)."""
    if method not in METHODS:
        raise ConfigError(f"audit: method must be one of {list_methods()}, got {method!r}.")
    return METHODS[method](network, x, target, cfg)


def attribute_batched(method: str, network: nn.Module, x: torch.Tensor, target: torch.Tensor,
                      cfg: AuditConfig) -> np.ndarray:
    """:func:`attribute` over ``x`` in chunks of ``cfg.batch_size`` images (bounded memory)."""
    outs = [attribute(method, network, x[s:s + cfg.batch_size], target[s:s + cfg.batch_size], cfg)
            for s in range(0, x.shape[0], cfg.batch_size)]
    return np.concatenate(outs) if outs else np.empty((0,) + tuple(x.shape[-2:]))
