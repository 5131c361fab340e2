"""timm backbones with offline pretrained weights: a local torch/safetensors file or an hf-hub id from a local
Hugging Face cache folder built here (real files, the layout huggingface_hub writes). No request may leave."""

from __future__ import annotations

import json
import socket

import pytest
import timm
import torch
from safetensors.torch import save_file

from pipeline.errors import ConfigError
from pipeline.models import ModelConfig, build_network

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any connection attempt fails the test: the loaders must never reach the network."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _imagenet_like(backbone: str = "resnet10t") -> torch.nn.Module:
    """An untrained 3-channel model with its 1000-class head, like a downloaded ImageNet checkpoint."""
    torch.manual_seed(1)
    return timm.create_model(backbone, num_classes=1000, in_chans=3).eval()


def _assert_same_features(network, source) -> None:
    """Our one-channel featurizer on x equals the 3-channel source on x repeated (timm sums the RGB filters)."""
    x = torch.rand(2, 1, 48, 48)
    with torch.no_grad():
        want = source.forward_head(source.forward_features(x.repeat(1, 3, 1, 1)), pre_logits=True)
        got = network.featurizer.eval()(x)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("suffix", ["pth", "safetensors"])
def test_pretrained_local_file_through_timm_loader_gives_the_saved_models_features(tmp_path, suffix):
    source = _imagenet_like()
    path = tmp_path / f"resnet10t.{suffix}"
    if suffix == "safetensors":
        save_file(source.state_dict(), str(path))
    else:
        torch.save({"state_dict": {f"module.{k}": v for k, v in source.state_dict().items()}}, path)
    network = build_network(ModelConfig(backbone="resnet10t", pretrained=str(path)))
    _assert_same_features(network, source)
    torch.testing.assert_close(network.featurizer.conv1[0].weight, source.conv1[0].weight.sum(1, keepdim=True))


def _fake_hf_cache(root, repo_id: str, source: torch.nn.Module, architecture: str, revision: str = "0" * 40):
    """models--org--name/{refs/main, snapshots/<rev>/{config.json, model.safetensors}} as huggingface_hub lays
    it out (real files in the snapshot instead of links to blobs, which the cache lookup accepts too)."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    (snapshot / "config.json").write_text(json.dumps({"architecture": architecture, "num_classes": 1000}))
    save_file(source.state_dict(), str(snapshot / "model.safetensors"))


def test_pretrained_hf_hub_id_resolved_from_local_cache(tmp_path, monkeypatch):
    source = _imagenet_like()
    _fake_hf_cache(tmp_path / "hub", "someorg/resnet10t.cxr", source, "resnet10t")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    network = build_network(ModelConfig(backbone="resnet10t", pretrained="hf-hub:someorg/resnet10t.cxr"))
    _assert_same_features(network, source)


def test_pretrained_hf_hub_id_not_cached_raises_config_error_saying_where(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ConfigError) as err:
        build_network(ModelConfig(backbone="resnet10t", pretrained="hf-hub:someorg/missing"))
    message = str(err.value)
    assert str(tmp_path / "hub" / "models--someorg--missing") in message
    assert "huggingface-cli download someorg/missing" in message and "Nothing is downloaded" in message


def test_pretrained_hf_hub_config_of_other_architecture_raises_config_error(tmp_path, monkeypatch):
    _fake_hf_cache(tmp_path / "hub", "someorg/convnext", _imagenet_like("convnext_atto"), "convnext_atto")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(ConfigError, match="backbone: convnext_atto"):
        build_network(ModelConfig(backbone="resnet10t", pretrained="hf-hub:someorg/convnext"))


def test_pretrained_missing_file_raises_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        build_network(ModelConfig(backbone="resnet10t", pretrained=str(tmp_path / "nope.safetensors")))


def test_pretrained_not_a_checkpoint_raises_config_error(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("these are not weights")
    with pytest.raises(ConfigError, match="must be a torch or safetensors checkpoint"):
        build_network(ModelConfig(backbone="resnet10t", pretrained=str(path)))


@pytest.mark.parametrize("backbone,norm", [("resnet18", "default"), ("resnet10t", "group")])
def test_pretrained_wrong_architecture_or_norm_raises_config_error(tmp_path, backbone, norm):
    path = tmp_path / "resnet10t.safetensors"
    save_file(_imagenet_like().state_dict(), str(path))
    with pytest.raises(ConfigError, match=f"must be a checkpoint of backbone '{backbone}'"):
        build_network(ModelConfig(backbone=backbone, norm_layer=norm, pretrained=str(path)))


def test_pretrained_xrv_cache_with_timm_backbone_raises_config_error():
    with pytest.raises(ConfigError, match="is for 'xrv:' backbones"):
        build_network(ModelConfig(backbone="resnet10t", pretrained="xrv-cache"))
