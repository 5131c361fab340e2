"""Pretrained weights for timm backbones, offline only: a local file, or an ``hf-hub:`` id from the local Hugging
Face cache. Both go through timm's own loader (its checkpoint filter, first-convolution adaptation to one channel,
strict loading); nothing is downloaded.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from torch import nn

from pipeline.errors import ConfigError

HF_PREFIX = "hf-hub:"
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def hf_cache_dir() -> Path:
    """The Hugging Face hub cache, read from the environment at call time (``HF_HUB_CACHE``, else
    ``HF_HOME/hub``, else ``~/.cache/huggingface/hub``): huggingface_hub reads it once at import."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def resolve_hf_hub(model_id: str) -> tuple[Path, str | None]:
    """``hf-hub:org/name[@revision]`` -> (local weight file, architecture named by its ``config.json``).

    Raises ConfigError naming the cache folder and how to fill it when the id is not cached.
    """
    from huggingface_hub import try_to_load_from_cache

    repo_id, _, revision = model_id.removeprefix(HF_PREFIX).partition("@")
    cache = hf_cache_dir()
    # try_to_load_from_cache only reads the folder (refs/<revision> -> snapshots/<hash>/<file>): no request.
    found = {name: try_to_load_from_cache(repo_id, name, cache_dir=cache, revision=revision or None)
             for name in ("config.json", *HF_WEIGHT_FILES)}
    weights = next((found[n] for n in HF_WEIGHT_FILES if isinstance(found[n], str)), None)
    if weights is None:
        folder = cache / f"models--{repo_id.replace('/', '--')}"
        raise ConfigError(
            f"model: pretrained {model_id!r} must be in the local Hugging Face cache, got no "
            f"{' or '.join(HF_WEIGHT_FILES)} under {folder}/snapshots/<revision>/ (refs/{revision or 'main'}). "
            f"Nothing is downloaded: on a machine with network run `huggingface-cli download {repo_id} "
            f"--cache-dir {cache}` and copy {folder} here (or set HF_HUB_CACHE to the cache that holds it), "
            "or point `pretrained` at the weight file itself.")
    architecture = None
    if isinstance(found["config.json"], str):
        architecture = json.loads(Path(found["config.json"]).read_text()).get("architecture")
    return Path(weights), architecture


def check_architecture(*, backbone: str, architecture: str | None, source: str) -> None:
    """The hf-hub model's ``config.json`` architecture must be the configured backbone (tags aside)."""
    if architecture and architecture.split(".")[0] != backbone.split(".")[0]:
        raise ConfigError(f"model: backbone must be the architecture of {source!r}, got backbone {backbone!r} "
                          f"but its config.json says {architecture!r}. Set `backbone: {architecture}`.")


def read_state_dict(path: Path) -> dict[str, Any]:
    """A local safetensors/torch checkpoint through timm's reader (``state_dict``/EMA wrappers and ``module.``
    prefixes removed). Raises ConfigError when the file is missing or not a checkpoint."""
    from timm.models import load_state_dict

    if not path.is_file():
        raise ConfigError(f"model: pretrained must be a local weight file, got {str(path)!r} (not found). "
                          "Copy the .safetensors/.pth file onto this machine and point `pretrained` at it, or use "
                          "an `hf-hub:org/name` id that is in the local Hugging Face cache; nothing is fetched.")
    try:
        state = load_state_dict(str(path))
    except Exception as exc:  # torch.load/safetensors raise many types on a corrupt or foreign file
        raise ConfigError(f"model: pretrained must be a torch or safetensors checkpoint, got {str(path)!r} "
                          f"({type(exc).__name__}: {exc}).") from exc
    if not isinstance(state, dict):
        raise ConfigError(f"model: pretrained must hold a state dict, got {type(state).__name__} ({str(path)!r}).")
    return state


def create_with_weights(backbone: str, source: str, kwargs: dict[str, Any]) -> nn.Module:
    """``timm.create_model(backbone, **kwargs)`` with the weights of ``source`` (local file or ``hf-hub:`` id).

    The classifier in the file is dropped up front so timm loads the rest strictly: a checkpoint of another
    architecture (or norm layer) raises ConfigError instead of leaving tensors at their random init.
    """
    import timm

    path = Path(source).expanduser()
    if source.startswith(HF_PREFIX):
        path, architecture = resolve_hf_hub(source)
        check_architecture(backbone=backbone, architecture=architecture, source=source)
    state = read_state_dict(path)
    default_cfg = timm.models.get_pretrained_cfg(backbone)
    heads = (default_cfg.classifier if default_cfg else None) or ()
    for head in (heads,) if isinstance(heads, str) else heads:
        state = {k: v for k, v in state.items() if not k.startswith(f"{head}.")}
    # Offline by construction: a `state_dict` in the overlay is timm's first weight source, before any file, URL or
    # hub id (timm.models._builder._resolve_pretrained_source); num_classes 0 keeps its strict load strict.
    overlay = {"state_dict": state, "num_classes": 0, "source": None}
    use_weights = True
    try:
        return timm.create_model(backbone, pretrained=use_weights, pretrained_cfg_overlay=overlay, **kwargs)
    except RuntimeError as exc:
        raise ConfigError(
            f"model: pretrained {source!r} must be a checkpoint of backbone {backbone!r} (norm_layer default for "
            f"BatchNorm checkpoints), got tensors that do not fit: {str(exc)[:400]}") from exc
