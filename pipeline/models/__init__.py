"""Backbones: any timm model name -> featurizer (``num_classes=0``) + ``nn.Linear`` head, one input channel.

``pretrained`` is only ever a local checkpoint path: nothing is downloaded.
"""

from pipeline.models.network import (
    Classifier,
    ModelConfig,
    build_network,
    load_model,
    save_model,
)

__all__ = ["Classifier", "ModelConfig", "build_network", "load_model", "save_model"]
