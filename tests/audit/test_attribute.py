import numpy as np
import pytest
import torch
from torch import nn

from pipeline.audit.attribute import attribute_batched, last_stage, list_methods, prepare_network
from pipeline.audit.config import ALL_METHODS, AuditConfig
from pipeline.audit.data import AuditData
from pipeline.audit.localisation import LungMassFraction, ShortcutMassFraction
from pipeline.errors import ConfigError
from pipeline.models import ModelConfig, build_network

CFG = AuditConfig(ig_steps=16, batch_size=8, internal_batch_size=64)


def _maps(network, ingest_dir, method):
    data = AuditData.open(ingest_dir, "test")
    rows = np.arange(len(data.frame))
    x = data.images(rows)
    net = prepare_network(network)
    target = net(x).argmax(1)
    return attribute_batched(method, net, x, target, CFG), data.lungs(rows), data.shortcuts(rows)


@pytest.mark.parametrize("method", ["integrated_gradients", "saliency", "grad_cam"])
def test_lung_reader_attribution_lung_mass_fraction_near_one(lung_reader, ingest_dir, method):
    maps, lungs, shortcuts = _maps(lung_reader, ingest_dir, method)
    fraction = LungMassFraction()(maps, lungs)
    assert np.isfinite(fraction).sum() >= 8
    assert np.nanmean(fraction) > 0.95
    assert np.nanmean(ShortcutMassFraction()(maps, shortcuts > 0)) < 0.05


@pytest.mark.parametrize("method", ["integrated_gradients", "saliency", "grad_cam"])
def test_shortcut_reader_attribution_lung_mass_fraction_near_zero(shortcut_reader, ingest_dir, method):
    maps, lungs, shortcuts = _maps(shortcut_reader, ingest_dir, method)
    fraction = LungMassFraction()(maps, lungs)
    assert np.isfinite(fraction).sum() >= 8
    assert np.nanmean(fraction) < 0.05


@pytest.mark.parametrize("backbone", ["resnet10t", "convnext_atto"])
def test_every_method_on_default_backbones_returns_finite_maps(backbone):
    torch.manual_seed(0)
    net = prepare_network(build_network(ModelConfig(backbone=backbone)))
    x = torch.rand(2, 1, 64, 64)
    target = torch.tensor([0, 1])
    for method in ALL_METHODS:
        maps = attribute_batched(method, net, x, target, AuditConfig(ig_steps=4, internal_batch_size=8,
                                                                     occlusion_window=0.5, occlusion_stride=0.5))
        assert maps.shape == (2, 64, 64), method
        assert np.isfinite(maps).all(), method
        assert np.abs(maps).sum() > 0, method


def test_prepare_network_disables_inplace_and_keeps_original():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(inplace=True), nn.Flatten(), nn.LazyLinear(2))
    net(torch.rand(1, 1, 8, 8))
    prepared = prepare_network(net)
    assert prepared[1].inplace is False
    assert net[1].inplace is True
    assert all(not p.requires_grad for p in prepared.parameters())
    assert all(p.requires_grad for p in net.parameters())


def test_last_stage_resnet_is_layer4():
    net = build_network(ModelConfig(backbone="resnet10t"))
    assert last_stage(net, 64) is net.featurizer.layer4


def test_attribute_unknown_method_raises_config_error():
    net = build_network(ModelConfig(backbone="resnet10t"))
    with pytest.raises(ConfigError, match="must be one of"):
        attribute_batched("lime", net, torch.rand(1, 1, 32, 32), torch.tensor([0]), CFG)
    assert set(ALL_METHODS) <= set(list_methods())
