"""Integrated Gradients' chunk size (from the batch and the device) and Grad-CAM's layer (timm's feature_info)."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
from captum.attr import IntegratedGradients
from torch import nn

from pipeline.audit.attribute import attribute, ig_chunk_size, last_stage, prepare_network
from pipeline.audit.config import AuditConfig
from pipeline.errors import ConfigError
from pipeline.models import Classifier, ModelConfig, build_network

torch.set_num_threads(1)


@pytest.mark.parametrize("n_images,steps,device,ibs,want", [
    (4, 32, "cpu", 64, 4),      # CPU: one step of the images' own batch per pass
    (1, 32, "cpu", 64, 1),
    (16, 32, "cpu", 8, 16),     # never fewer inputs than images (Captum's own floor)
    (4, 32, "cuda", 64, 64),    # GPU: whole steps up to the memory bound
    (5, 32, "cuda", 64, 60),
    (4, 8, "cuda", 256, 32),    # no more than all the steps at once
    (80, 32, "cuda", 64, 80),
])
def test_ig_chunk_size_from_batch_and_device(n_images, steps, device, ibs, want):
    cfg = AuditConfig(ig_steps=steps, internal_batch_size=ibs)
    chunk = ig_chunk_size(cfg, n_images=n_images, device=torch.device(device))
    assert chunk == want and chunk % n_images == 0


def test_integrated_gradients_same_maps_as_one_unchunked_pass():
    torch.manual_seed(0)
    net = prepare_network(build_network(ModelConfig(backbone="resnet10t", norm_layer="group")))
    x = torch.rand(3, 1, 32, 32)
    target = torch.tensor([0, 1, 1])
    cfg = AuditConfig(ig_steps=8)
    maps = attribute("integrated_gradients", net, x, target, cfg)
    whole = IntegratedGradients(net).attribute(x, baselines=torch.zeros_like(x), target=target, n_steps=8)
    # Captum's one-pass default (all n_steps x B inputs together): equal maps mean the chunks covered every step
    np.testing.assert_allclose(maps, whole.sum(dim=1).double().numpy(), rtol=1e-4, atol=1e-6)
    assert np.abs(maps).sum() > 0


@pytest.mark.parametrize("backbone,module", [("resnet10t", "layer4"), ("convnext_atto", "stages.3")])
def test_grad_cam_layer_is_last_feature_info_stage(backbone, module):
    network = build_network(ModelConfig(backbone=backbone))
    assert last_stage(network, 32) is network.featurizer.get_submodule(module)


def test_grad_cam_layer_without_feature_info_is_last_spatial_child():
    featurizer = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 6, 3), nn.AdaptiveAvgPool2d(1),
                               nn.Flatten())
    network = Classifier(featurizer, nn.Linear(6, 2))
    assert last_stage(network, 16) is featurizer[3]  # the pool's (B, 6, 1, 1) is still 4-D; Flatten's is not


def test_grad_cam_layer_on_token_stages_raises_config_error():
    vit = timm.create_model("vit_tiny_patch16_224", img_size=32, in_chans=1, num_classes=0, depth=2)
    network = Classifier(vit, nn.Linear(vit.num_features, 2))
    with pytest.raises(ConfigError, match="set grad_cam_layer"):
        last_stage(network, 32)
