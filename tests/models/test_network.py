"""build_network over the backbones we document: norms, one input channel, local checkpoints, bad names."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pipeline.errors import ConfigError
from pipeline.models import ModelConfig, build_network, load_model, save_model

torch.set_num_threads(1)

NORM_TYPES = {"batch": nn.BatchNorm2d, "group": nn.GroupNorm}


@pytest.mark.parametrize("norm", ["default", "batch", "group"])
@pytest.mark.parametrize("backbone", ["resnet10t", "resnet18", "convnext_atto"])
def test_build_network_backbone_and_norm_gives_one_channel_two_logits(backbone, norm):
    network = build_network(ModelConfig(backbone=backbone, norm_layer=norm))
    assert network(torch.randn(2, 1, 32, 32)).shape == (2, 2)
    assert isinstance(network.classifier, nn.Linear)
    assert network.featurizer(torch.randn(2, 1, 32, 32)).shape == (2, network.classifier.in_features)
    norms = [m for m in network.featurizer.modules() if isinstance(m, (nn.BatchNorm2d, nn.GroupNorm))]
    if norm in NORM_TYPES:
        other = NORM_TYPES["group" if norm == "batch" else "batch"]
        assert norms and all(isinstance(m, NORM_TYPES[norm]) for m in norms)
        assert not any(isinstance(m, other) for m in network.featurizer.modules())
    # Captum's backward hooks fail on in-place activations
    assert not any(getattr(m, "inplace", False) for m in network.modules())


def test_build_network_group_norm_groups_divide_channels():
    network = build_network(ModelConfig(backbone="convnext_atto", norm_layer="group"))
    for m in network.modules():
        if isinstance(m, nn.GroupNorm):
            assert m.num_channels % m.num_groups == 0 and m.num_groups > 1


def test_build_network_pretrained_local_checkpoint_loads_weights(tmp_path):
    source = build_network(ModelConfig(backbone="resnet10t"))
    with torch.no_grad():
        for p in source.featurizer.parameters():
            p.add_(1.0)
    path = tmp_path / "weights.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in source.featurizer.state_dict().items()}}, path)
    network = build_network(ModelConfig(backbone="resnet10t", pretrained=str(path)))
    want = source.featurizer.state_dict()
    for k, got in network.featurizer.state_dict().items():
        assert torch.equal(got, want[k]), k


def test_build_network_pretrained_three_channel_checkpoint_adapts_first_conv(tmp_path):
    import timm

    rgb = timm.create_model("resnet10t", num_classes=0, in_chans=3)
    path = tmp_path / "rgb.pth"
    torch.save(rgb.state_dict(), path)
    network = build_network(ModelConfig(backbone="resnet10t", pretrained=str(path)))
    first = network.featurizer.state_dict()["conv1.0.weight"]
    torch.testing.assert_close(first, rgb.state_dict()["conv1.0.weight"].sum(dim=1, keepdim=True))


def test_build_network_pretrained_missing_path_raises_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        build_network(ModelConfig(backbone="resnet10t", pretrained=str(tmp_path / "nope.pth")))


def test_build_network_pretrained_other_architecture_raises_config_error(tmp_path):
    path = tmp_path / "convnext.pth"
    torch.save(build_network(ModelConfig(backbone="convnext_atto")).featurizer.state_dict(), path)
    with pytest.raises(ConfigError, match="must be a checkpoint of backbone"):
        build_network(ModelConfig(backbone="resnet10t", pretrained=str(path)))


def test_build_network_unknown_backbone_raises_config_error_with_suggestions():
    with pytest.raises(ConfigError) as err:
        build_network(ModelConfig(backbone="resnt18"))
    assert "'resnt18'" in str(err.value) and "resnet18" in str(err.value)


def test_save_model_load_model_roundtrip_same_logits(tmp_path):
    cfg = ModelConfig(backbone="resnet10t", norm_layer="group")
    network = build_network(cfg).eval()
    save_model(tmp_path / "model.pt", network, cfg, {"algorithm": "fishr"})
    loaded, loaded_cfg, meta = load_model(tmp_path)
    x = torch.randn(2, 1, 32, 32)
    assert torch.equal(loaded(x), network(x)) and loaded_cfg == cfg and meta == {"algorithm": "fishr"}
