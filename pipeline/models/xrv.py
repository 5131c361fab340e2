"""torchxrayvision's chest X-ray models as featurizers: ``backbone: xrv:<weights name>``.

The featurizer takes the pipeline's (B, 1, H, W) images in [0, 1] and does what torchxrayvision expects inside:
scale to [-1024, 1024] and resize (bilinear, antialiased, as ``xrv.utils.fix_resolution``) to the model's
resolution; it returns pooled features (B, 1024) for the DenseNet-121s and (B, 2048) for the ResNet-50.
Weights come from a local file or from torchxrayvision's own cache folder; nothing is downloaded (xrv's
constructors download when given ``weights=``, so we build the bare architecture and load the file ourselves).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.errors import ConfigError

XRV_PREFIX = "xrv:"
XRV_CACHE = "xrv-cache"  # `pretrained: xrv-cache`: the file in torchxrayvision's cache folder
XRV_RANGE = 1024.0  # xrv.datasets.normalize maps [0, maxval] to [-1024, 1024]


class XrvFeaturizer(nn.Module):
    """(B, 1, H, W) in [0, 1] -> (B, num_features) pooled features of a torchxrayvision network ``body``.

    ``feature_info`` names the last spatial stage the way timm does, so Grad-CAM finds its layer the same way.
    """

    def __init__(self, *, body: nn.Module, num_features: int, resolution: int, last_stage: str,
                 drop_rate: float, densenet: bool) -> None:
        super().__init__()
        self.body = body
        self.num_features = num_features
        self.resolution = resolution
        self.drop_rate = drop_rate
        self.densenet = densenet
        self.feature_info = [{"num_chs": num_features, "reduction": 32, "module": last_stage}]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x * (2 * XRV_RANGE) - XRV_RANGE
        if tuple(x.shape[-2:]) != (self.resolution, self.resolution):
            x = F.interpolate(x, size=(self.resolution, self.resolution), mode="bilinear", antialias=True)
        out = self.body(x)
        if self.densenet:  # xrv DenseNet.features2: relu + global average pool after norm5 (not in place)
            out = F.adaptive_avg_pool2d(F.relu(out), 1).flatten(1)
        return F.dropout(out, p=self.drop_rate, training=self.training)


def xrv_weights_names() -> list[str]:
    import torchxrayvision as xrv

    return sorted(k for k in xrv.models.model_urls if k.startswith(("densenet121-", "resnet50-")))


def xrv_cache_file(name: str) -> Path:
    """Where torchxrayvision keeps (and would download) the weights of ``name``: its cache dir + the URL's
    file name (``xrv.models.get_weights``)."""
    import torchxrayvision as xrv

    return Path(os.path.expanduser(os.path.join(xrv.utils.get_cache_dir(),
                                                os.path.basename(xrv.models.model_urls[name]["weights_url"]))))


def _read_xrv_file(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from ``path``. torchxrayvision ships its DenseNet weights as a pickled whole module (its own
    loader uses ``weights_only=False``): that form is accepted too, so only point at files you trust."""
    try:
        state: Any = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        state = _load_pickled_module(path)
    except (OSError, RuntimeError, ValueError, EOFError) as exc:  # OSError: a truncated zip (Errno 22)
        raise ConfigError(f"model: pretrained must be a torchxrayvision weight file, got {str(path)!r} "
                          f"({exc}).") from exc
    if isinstance(state, nn.Module):
        state = state.state_dict()
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ConfigError(f"model: pretrained must hold a state dict or a module, got {type(state).__name__} "
                          f"({str(path)!r}).")
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _load_pickled_module(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # unpickling a foreign file raises anything
        raise ConfigError(f"model: pretrained must be a torchxrayvision weight file, got {str(path)!r} "
                          f"({type(exc).__name__}: {exc}).") from exc


def _weights_file(name: str, pretrained: str) -> Path:
    path = xrv_cache_file(name) if pretrained == XRV_CACHE else Path(pretrained).expanduser()
    if not path.is_file():
        import torchxrayvision as xrv

        url = xrv.models.model_urls[name]["weights_url"]
        raise ConfigError(
            f"model: pretrained for backbone 'xrv:{name}' must be a local file, got {str(path)!r} (not found). "
            f"Nothing is downloaded: on a machine with network run `wget {url} -O {xrv_cache_file(name)}` "
            f"and copy the file here (then `pretrained: {XRV_CACHE}`), or point `pretrained` at the file.")
    return path


def _load_strict(module: nn.Module, state: dict[str, torch.Tensor], *, name: str, path: Path) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ConfigError(f"model: pretrained {str(path)!r} must be a checkpoint of 'xrv:{name}', got tensors "
                          f"that do not fit: {str(exc)[:400]}") from exc


def _densenet_body(name: str, path: Path | None) -> nn.Module:
    import torchxrayvision as xrv

    net = xrv.models.DenseNet(weights=None)  # weights=None: never downloads
    if path is not None:
        state = {k.removeprefix("features."): v for k, v in _read_xrv_file(path).items()
                 if k.startswith("features.")}  # the 18-pathology classifier and op_threshs are not used
        _load_strict(net.features, state, name=name, path=path)
    return net.features


def _resnet_body(name: str, path: Path | None) -> nn.Module:
    import torchvision

    # xrv.models.ResNet's architecture: torchvision's ResNet-50 with a one-channel first convolution
    net = torchvision.models.resnet50(weights=None)
    net.conv1 = nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    net.fc = nn.Identity()
    if path is not None:
        state = {k: v for k, v in _read_xrv_file(path).items() if not k.startswith("fc.")}
        _load_strict(net, state, name=name, path=path)
    return net


def create_xrv_featurizer(*, backbone: str, pretrained: str | None, in_chans: int, norm_layer: str,
                          drop_rate: float) -> XrvFeaturizer:
    """``xrv:<name>`` -> :class:`XrvFeaturizer`; ``pretrained``: a file, ``xrv-cache``, or None (random init).

    Raises ConfigError on an unknown name, in_chans != 1, a non-default norm layer, a missing file, a
    ``hf-hub:`` id, or a checkpoint of another architecture.
    """
    import torchxrayvision as xrv

    name = backbone.removeprefix(XRV_PREFIX)
    if name not in xrv_weights_names():
        raise ConfigError(f"model: backbone 'xrv:<name>' must name torchxrayvision weights, got {backbone!r}. "
                          f"Valid: {['xrv:' + n for n in xrv_weights_names()]}.")
    if in_chans != 1 or norm_layer != "default":
        raise ConfigError(f"model: backbone {backbone!r} needs in_chans 1 and norm_layer default (its trained "
                          f"BatchNorm), got in_chans {in_chans} and norm_layer {norm_layer!r}.")
    if pretrained is not None and pretrained.startswith("hf-hub:"):
        raise ConfigError(f"model: pretrained for {backbone!r} must be a local file or {XRV_CACHE!r}, got "
                          f"{pretrained!r} (hf-hub ids are for timm backbones).")
    path = _weights_file(name, pretrained) if pretrained is not None else None
    resolution = int(xrv.models.model_urls[name]["input_resolution"])
    # drop_rate: dropout on the pooled features, as timm's drop_rate before the head
    if name.startswith("densenet"):
        return XrvFeaturizer(body=_densenet_body(name, path), num_features=1024, resolution=resolution,
                             last_stage="body", drop_rate=drop_rate, densenet=True)
    return XrvFeaturizer(body=_resnet_body(name, path), num_features=2048, resolution=resolution,
                         last_stage="body.layer4", drop_rate=drop_rate, densenet=False)
