"""Backbones: any timm model name or a torchxrayvision model (``xrv:<name>``) -> featurizer + ``nn.Linear`` head.

``pretrained``: a local file, a cached ``hf-hub:`` id or ``xrv-cache``: nothing is downloaded.
"""

from pipeline.models.network import (
    Classifier,
    ModelConfig,
    build_network,
    load_model,
    read_torch_file,
    save_model,
)

__all__ = ["Classifier", "ModelConfig", "build_network", "load_model", "read_torch_file", "save_model"]
