"""torchxrayvision backbones (``xrv:<name>``): weights from a file or xrv's own cache folder (HOME in tmp_path),
checked against torchxrayvision's own model on the same file; its input scaling inside; Fishr and Grad-CAM on it;
the error paths. Untrained weights saved here; no request may leave."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.nn.functional as F
import torchvision
import torchxrayvision as xrv

from pipeline.algorithms import build
from pipeline.audit.attribute import attribute, last_stage, prepare_network
from pipeline.audit.config import AuditConfig
from pipeline.errors import ConfigError
from pipeline.models import ModelConfig, build_network, load_model, save_model
from pipeline.models.xrv import xrv_cache_file

torch.set_num_threads(1)
DENSENET = "xrv:densenet121-res224-all"
RESNET = "xrv:resnet50-res512-all"


@pytest.fixture(autouse=True)
def offline_home(tmp_path, monkeypatch):
    """HOME in tmp_path (xrv's cache is ~/.torchxrayvision/models_data) and any connection attempt fails."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def _xrv_scaled(x: torch.Tensor, resolution: int) -> torch.Tensor:
    """What torchxrayvision expects: [-1024, 1024] at its resolution (xrv.utils.fix_resolution's resize)."""
    return F.interpolate(x * 2048 - 1024, size=(resolution, resolution), mode="bilinear", antialias=True)


def _untrained_densenet() -> torch.nn.Module:
    torch.manual_seed(2)
    net = xrv.models.DenseNet(weights=None).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so a missed buffer would show
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    return net


def test_xrv_densenet_from_state_dict_file_gives_the_saved_models_features(tmp_path):
    source = _untrained_densenet()
    path = tmp_path / "densenet.pt"
    torch.save(source.state_dict(), path)
    network = build_network(ModelConfig(backbone=DENSENET, pretrained=str(path))).eval()
    x = torch.rand(2, 1, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(network.featurizer(x), source.features2(_xrv_scaled(x, 224)))
    assert network.classifier.in_features == 1024 and network(x).shape == (2, 2)


def test_xrv_densenet_from_xrv_cache_folder_matches_xrvs_own_loader():
    """xrv ships its DenseNet weights as a pickled module in ~/.torchxrayvision/models_data/<url basename>;
    xrv's own constructor reads that file (no download when present) and our featurizer must agree with it."""
    cached = xrv_cache_file("densenet121-res224-all")
    cached.parent.mkdir(parents=True)
    torch.save(_untrained_densenet(), cached)
    theirs = xrv.models.DenseNet(weights="densenet121-res224-all").eval()
    ours = build_network(ModelConfig(backbone=DENSENET, pretrained="xrv-cache")).eval()
    x = torch.rand(1, 1, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours.featurizer(x), theirs.features2(x * 2048 - 1024))


def test_xrv_resnet50_from_xrv_cache_matches_xrvs_own_loader_and_gradcam_layer_is_layer4():
    torch.manual_seed(3)
    source = torchvision.models.resnet50(weights=None, num_classes=18)
    source.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    cached = xrv_cache_file("resnet50-res512-all")
    cached.parent.mkdir(parents=True)
    torch.save(source.state_dict(), cached)
    theirs = xrv.models.ResNet(weights="resnet50-res512-all").eval()
    ours = build_network(ModelConfig(backbone=RESNET, pretrained="xrv-cache")).eval()
    x = torch.rand(1, 1, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours.featurizer(x), theirs.features(_xrv_scaled(x, 512)))
    assert ours.featurizer.resolution == 512 and ours.classifier.in_features == 2048
    assert last_stage(ours, 64) is ours.featurizer.body.layer4


def test_xrv_densenet_fishr_update_and_grad_cam_on_tiny_input():
    torch.manual_seed(0)
    network = build_network(ModelConfig(backbone=DENSENET))
    algorithm = build("fishr", network.featurizer, network.classifier, 2, {"penalty_anneal_iters": 0})
    batches = [(torch.rand(2, 1, 32, 32), torch.tensor([0, 1])) for _ in range(2)]
    before = network.featurizer.body.conv0.weight.detach().clone()
    out = algorithm.update(batches)
    assert set(out) == {"loss", "nll", "penalty"} and all(torch.isfinite(torch.tensor(v)) for v in out.values())
    assert not torch.equal(before, network.featurizer.body.conv0.weight)

    net = prepare_network(network)
    assert last_stage(net, 32) is net.featurizer.body
    maps = attribute("grad_cam", net, torch.rand(1, 1, 32, 32), torch.tensor([1]), AuditConfig())
    assert maps.shape == (1, 32, 32) and (maps >= 0).all() and maps.max() > 0


def test_xrv_network_save_load_roundtrip_needs_no_weights_file(tmp_path):
    source = _untrained_densenet()
    torch.save(source.state_dict(), tmp_path / "w.pt")
    cfg = ModelConfig(backbone=DENSENET, pretrained=str(tmp_path / "w.pt"))
    network = build_network(cfg).eval()
    save_model(tmp_path / "model.pt", network, cfg, {})
    (tmp_path / "w.pt").unlink()
    loaded, _, _ = load_model(tmp_path)
    x = torch.rand(1, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), network(x))


def test_xrv_missing_cache_file_raises_config_error_with_where_and_how():
    with pytest.raises(ConfigError) as err:
        build_network(ModelConfig(backbone=DENSENET, pretrained="xrv-cache"))
    message = str(err.value)
    assert str(xrv_cache_file("densenet121-res224-all")) in message
    assert "wget https://github.com/mlmed/torchxrayvision/releases/download/" in message
    assert not xrv_cache_file("densenet121-res224-all").exists()  # nothing was fetched


def test_xrv_checkpoint_of_other_architecture_raises_config_error(tmp_path):
    path = tmp_path / "resnet.pt"
    resnet = torchvision.models.resnet50(weights=None)
    resnet.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    torch.save(resnet.state_dict(), path)
    with pytest.raises(ConfigError, match="must be a checkpoint of 'xrv:densenet121-res224-all'"):
        build_network(ModelConfig(backbone=DENSENET, pretrained=str(path)))


@pytest.mark.parametrize("fields,match", [
    ({"backbone": "xrv:densenet999-res1-all"}, "must name torchxrayvision weights"),
    ({"backbone": DENSENET, "in_chans": 3}, "needs in_chans 1"),
    ({"backbone": DENSENET, "norm_layer": "group"}, "norm_layer default"),
    ({"backbone": DENSENET, "pretrained": "hf-hub:org/name"}, "hf-hub ids are for timm backbones"),
    ({"backbone": DENSENET, "pretrained": "/nowhere/densenet.pt"}, "not found"),
])
def test_xrv_bad_config_raises_config_error(fields, match):
    with pytest.raises(ConfigError, match=match):
        build_network(ModelConfig(**fields))


def test_fishr_xrv_example_config_builds_from_xrv_cache():
    from pathlib import Path

    from pipeline.config import load_config
    from pipeline.train.config import TrainConfig

    cfg = load_config(TrainConfig, Path(__file__).parents[2] / "configs/train/fishr_xrv.yaml")
    assert cfg.algorithm == "fishr" and cfg.model.backbone == DENSENET and cfg.model.pretrained == "xrv-cache"
    cached = xrv_cache_file("densenet121-res224-all")
    cached.parent.mkdir(parents=True)
    torch.save(_untrained_densenet(), cached)
    assert build_network(cfg.model).featurizer.resolution == 224
