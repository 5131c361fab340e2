"""Featurizer + linear head built from a timm model name or a torchxrayvision model; saving and loading ``model.pt``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal, get_args

import torch
from pydantic import SerializerFunctionWrapHandler, model_serializer
from torch import nn

from pipeline.config import StrictModel
from pipeline.errors import ConfigError, DataError
from pipeline.models.weights import create_with_weights
from pipeline.models.xrv import XRV_CACHE, XRV_PREFIX, create_xrv_featurizer

MODEL_FILE_FORMAT = 1

FinalNorm = Literal["keep", "identity"]
FINAL_NORM_CHOICES: tuple[str, ...] = get_args(FinalNorm)
# Where timm puts a backbone's last normalisation before the classifier: ConvNeXt's NormMlpClassifierHead pools and
# then normalises (``head.norm``); ConvNeXt built with ``head_norm_first`` normalises and then pools (``norm_pre``).
_FINAL_NORM_PLACES = ("head.norm", "norm_pre")


class ModelConfig(StrictModel):
    """The network: backbone (any timm model name, or ``xrv:<torchxrayvision weights>``), its normalisation,
    head size, optional offline pretrained weights."""

    backbone: str = "resnet10t"
    norm_layer: Literal["default", "batch", "group"] = "default"
    num_classes: int = 2
    in_chans: int = 1
    drop_rate: float = 0.0
    # A local weight file (safetensors/torch), an `hf-hub:org/name` id in the local Hugging Face cache, or for
    # `xrv:` backbones `xrv-cache` (torchxrayvision's cache folder); None trains from scratch. Never downloaded.
    pretrained: str | None = None
    # The backbone's final normalisation before the head: "keep" it (timm's network), or replace it by identity
    # ("identity": no final affine norm, so the pooled features reach the head unnormalised; docs/study/fishr_gap.md,
    # where convnext_atto's final LayerNorm may let Fishr shrink the features to a constant). Only for backbones
    # with a final norm timm exposes (ConvNeXt: ``head.norm`` or ``norm_pre``); others are a ConfigError.
    final_norm: FinalNorm = "keep"

    @model_serializer(mode="wrap")
    def _omit_default_final_norm(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # "keep" is the network every config meant before the option existed: leaving it out of the dump keeps
        # the hashes of existing configs (sweep run directories, demo fingerprints) and model files unchanged.
        data = handler(self)
        if self.final_norm == "keep":
            data.pop("final_norm", None)
        return data


def group_norm(num_channels: int, eps: float = 1e-5, affine: bool = True, **_: Any) -> nn.GroupNorm:
    """GroupNorm with up to 8 groups that divide ``num_channels`` (timm calls norm_layer(channels, ...))."""
    groups = math.gcd(num_channels, 8)
    return nn.GroupNorm(groups, num_channels, eps=eps, affine=affine)


class Classifier(nn.Module):
    """``logits = classifier(featurizer(x))``; ``featurizer`` returns pooled features (B, n_outputs)."""

    def __init__(self, featurizer: nn.Module, classifier: nn.Linear) -> None:
        super().__init__()
        self.featurizer = featurizer
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.featurizer(x))


def _create_featurizer(cfg: ModelConfig) -> nn.Module:
    if cfg.backbone.startswith(XRV_PREFIX):
        featurizer: nn.Module = create_xrv_featurizer(backbone=cfg.backbone, pretrained=cfg.pretrained,
                                                      in_chans=cfg.in_chans, norm_layer=cfg.norm_layer,
                                                      drop_rate=cfg.drop_rate)
    else:
        featurizer = _create_timm_featurizer(cfg)
    if cfg.final_norm == "identity":
        _remove_final_norm(featurizer, backbone=cfg.backbone)
    _disable_inplace(featurizer)
    return featurizer


def _remove_final_norm(featurizer: nn.Module, *, backbone: str) -> None:
    """Replace the backbone's final normalisation before the head by ``nn.Identity`` (in place).

    ConvNeXt (timm): ``head.norm`` is the LayerNorm applied to the globally pooled (B, C) features, or ``norm_pre``
    the one applied to the (B, C, H, W) map before pooling. Raises ConfigError for a backbone with neither (the
    option would otherwise silently do nothing), naming the backbone and the valid choices.
    """
    for place in _FINAL_NORM_PLACES:
        owner_name, _, attr = place.rpartition(".")
        owner = getattr(featurizer, owner_name, None) if owner_name else featurizer
        current = getattr(owner, attr, None)
        if isinstance(current, nn.Module) and not isinstance(current, nn.Identity):
            setattr(owner, attr, nn.Identity())
            return
    raise ConfigError(
        f"model: final_norm 'identity' needs a backbone with a final norm before the head (timm's "
        f"{' or '.join(_FINAL_NORM_PLACES)}, as in ConvNeXt), got backbone {backbone!r}, which has none. "
        f"Use final_norm: keep (choices: {', '.join(FINAL_NORM_CHOICES)}), or a ConvNeXt backbone such as "
        "convnext_atto."
    )


def _create_timm_featurizer(cfg: ModelConfig) -> nn.Module:
    import timm

    if not timm.is_model(cfg.backbone):
        raise ConfigError(
            f"model: backbone must be a timm model name or 'xrv:<torchxrayvision weights>', got {cfg.backbone!r}. "
            f"Similar names: {_similar_models(cfg.backbone)}. "
            "`python -c 'import timm; print(timm.list_models())'` lists them all."
        )
    if cfg.pretrained == XRV_CACHE:
        raise ConfigError(f"model: pretrained {XRV_CACHE!r} is for 'xrv:' backbones, got backbone "
                          f"{cfg.backbone!r}. Use a local weight file or an `hf-hub:org/name` id.")
    kwargs: dict[str, Any] = {"num_classes": 0, "in_chans": cfg.in_chans, "drop_rate": cfg.drop_rate}
    if cfg.norm_layer == "batch":
        kwargs["norm_layer"] = nn.BatchNorm2d
    elif cfg.norm_layer == "group":
        kwargs["norm_layer"] = group_norm
    try:
        if cfg.pretrained:
            return create_with_weights(cfg.backbone, cfg.pretrained, kwargs)
        return timm.create_model(cfg.backbone, **kwargs)
    except TypeError as exc:
        raise ConfigError(
            f"model: norm_layer must be one that {cfg.backbone!r} accepts, got {cfg.norm_layer!r} ({exc}). "
            "Use norm_layer: default for this backbone."
        ) from exc


def _similar_models(name: str) -> list[str]:
    import difflib

    import timm

    names = timm.list_models()
    close = difflib.get_close_matches(name, names, n=8, cutoff=0.6)
    prefix = [n for n in names if n.startswith(name.split("_")[0][:5])][:8]
    return list(dict.fromkeys(close + prefix))[:10]


def _disable_inplace(module: nn.Module) -> None:
    """In-place activations break the backward hooks Captum registers (pytorch#61519): turn them off."""
    for m in module.modules():
        if getattr(m, "inplace", False) is True:
            m.inplace = False


def build_network(cfg: ModelConfig) -> Classifier:
    featurizer = _create_featurizer(cfg)
    head = nn.Linear(featurizer.num_features, cfg.num_classes)
    return Classifier(featurizer, head)


def save_model(path: str | Path, network: nn.Module, cfg: ModelConfig, meta: dict[str, Any]) -> None:
    """Write ``model.pt`` atomically: the config to rebuild the network, its weights, and metadata (algorithm,
    hparams, seed, selection rule, step, ...)."""
    from pipeline.stage import atomic_path

    payload = {
        "format": MODEL_FILE_FORMAT,
        "model_config": cfg.model_dump(mode="json"),
        "state_dict": {k: v.detach().cpu() for k, v in network.state_dict().items()},
        "meta": meta,
    }
    with atomic_path(path) as tmp:
        torch.save(payload, tmp)


def read_torch_file(path: str | Path, *, stage: str, what: str = "cxr-fishr model file",
                    fix: str = "re-run `cxr-fishr train` to write it again",
                    map_location: str | torch.device = "cpu") -> Any:
    """The payload ``torch.load`` reads from ``path`` (a model.pt, selected/*.pt or a train checkpoint). A file torch
    cannot read (truncated, half-copied, not a torch file: OSError, RuntimeError, EOFError, UnpicklingError) is a
    DataError naming the file, what it must be, torch's message and ``fix``; the one reader every .pt goes through."""
    import pickle

    try:
        return torch.load(path, map_location=map_location, weights_only=False)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError, ValueError) as exc:
        size = Path(path).stat().st_size if Path(path).is_file() else None
        got = f"{size} bytes torch cannot read" if size is not None else "nothing"
        raise DataError(f"{stage}: {path} must be a readable {what}, got {got} ({type(exc).__name__}: "
                        f"{str(exc).splitlines()[0][:160] if str(exc) else 'no message'}); the file is truncated "
                        f"or damaged. Fix: {fix}.") from None


def load_model(path: str | Path) -> tuple[Classifier, ModelConfig, dict[str, Any]]:
    """Load ``model.pt`` (or ``<dir>/model.pt``) into an eval-mode network on CPU."""
    path = Path(path)
    if path.is_dir():
        path = path / "model.pt"
    if not path.is_file():
        raise DataError(f"model: {path} must exist, got nothing. Train with `cxr-fishr train` first.")
    payload = read_torch_file(path, stage="model")
    if not isinstance(payload, dict) or payload.get("format") != MODEL_FILE_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise DataError(f"model: {path} must be a cxr-fishr model file of format {MODEL_FILE_FORMAT}, got "
                        f"{found!r}. Re-run `cxr-fishr train` to write it again.")
    cfg = ModelConfig.model_validate({**payload["model_config"], "pretrained": None})
    network = build_network(cfg)
    network.load_state_dict(payload["state_dict"])
    network.eval()
    return network, cfg, dict(payload.get("meta", {}))
