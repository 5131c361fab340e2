"""model.final_norm: convnext_atto without its final LayerNorm (docs/study/fishr_gap.md's normalisation factor)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pipeline.algorithms import build
from pipeline.errors import ConfigError
from pipeline.models import ModelConfig, build_network, load_model, save_model
from pipeline.train.config import TrainConfig

torch.set_num_threads(1)

IDENTITY = ModelConfig(backbone="convnext_atto", final_norm="identity")


def _keep_and_identity(seed: int = 0) -> tuple[nn.Module, nn.Module]:
    """Two convnext_atto networks with the same weights, one with its final LayerNorm and one without."""
    torch.manual_seed(seed)
    keep = build_network(ModelConfig(backbone="convnext_atto")).eval()
    identity = build_network(IDENTITY).eval()
    missing, unexpected = identity.load_state_dict(keep.state_dict(), strict=False)
    assert missing == [] and sorted(unexpected) == ["featurizer.head.norm.bias", "featurizer.head.norm.weight"]
    return keep, identity


def test_final_norm_identity_features_are_timms_pooled_features_before_the_norm():
    keep, identity = _keep_and_identity()
    x = torch.randn(3, 1, 32, 32)
    with torch.no_grad():
        timm_net = keep.featurizer
        pooled = timm_net.head.flatten(timm_net.head.global_pool(timm_net.forward_features(x)))  # (3, 320)
        got = identity.featurizer(x)
        kept = keep.featurizer(x)
    assert got.shape == (3, 320)
    torch.testing.assert_close(got, pooled, rtol=0, atol=0)
    # the kept network normalises those same features: per sample mean 0 and unit variance before its affine
    norm = timm_net.head.norm
    want = (pooled - pooled.mean(1, keepdim=True)) / torch.sqrt(pooled.var(1, unbiased=False, keepdim=True) + norm.eps)
    torch.testing.assert_close(kept, want * norm.weight + norm.bias, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(got, kept, atol=1e-3)


def test_final_norm_identity_has_no_norm_left_in_the_head():
    network = build_network(IDENTITY)
    assert isinstance(network.featurizer.head.norm, nn.Identity)
    assert not any(k.startswith("featurizer.head.norm") for k in network.state_dict())
    assert network.classifier.in_features == 320


def test_final_norm_identity_save_load_gives_identical_outputs(tmp_path):
    torch.manual_seed(3)
    network = build_network(IDENTITY).eval()
    save_model(tmp_path / "model.pt", network, IDENTITY, {"algorithm": "fishr"})
    loaded, cfg, _ = load_model(tmp_path)
    assert cfg.final_norm == "identity" and isinstance(loaded.featurizer.head.norm, nn.Identity)
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), network(x))


def test_final_norm_is_recorded_only_when_not_the_default():
    assert IDENTITY.model_dump(mode="json")["final_norm"] == "identity"
    # the default network's dump is what it was before the option existed (sweep run-directory hashes)
    assert "final_norm" not in ModelConfig(backbone="convnext_atto").model_dump(mode="json")
    assert ModelConfig.model_validate(IDENTITY.model_dump(mode="json")) == IDENTITY
    train = TrainConfig.model_validate({"model": {"backbone": "convnext_atto", "final_norm": "identity"}})
    assert TrainConfig.model_validate(train.model_dump(mode="json")).model.final_norm == "identity"


def test_final_norm_identity_fishr_step_updates_the_backbone_with_a_penalty():
    torch.manual_seed(0)
    network = build_network(IDENTITY)
    algorithm = build("fishr", network.featurizer, network.classifier, 2,
                      {"lambda": 100.0, "penalty_anneal_iters": 0, "batch_size": 4, "lr": 1e-3})
    g = torch.Generator().manual_seed(1)
    batches = [(torch.rand(4, 1, 32, 32, generator=g) + 0.3 * e, torch.tensor([0, 1, 0, 1])) for e in range(2)]
    before = network.featurizer.stem[0].weight.detach().clone()
    stats = algorithm.update(batches)
    assert stats["penalty"] > 0 and torch.isfinite(torch.tensor(stats["loss"]))
    assert stats["loss"] == pytest.approx(stats["nll"] + 100.0 * stats["penalty"], rel=1e-5)
    assert not torch.equal(network.featurizer.stem[0].weight, before)


@pytest.mark.parametrize("backbone", ["resnet18", "resnet10t"])
def test_final_norm_identity_on_a_backbone_without_one_is_a_config_error(backbone):
    with pytest.raises(ConfigError) as err:
        build_network(ModelConfig(backbone=backbone, final_norm="identity"))
    message = str(err.value)
    assert repr(backbone) in message and "keep" in message and "identity" in message


def test_final_norm_unknown_value_is_a_config_error_listing_the_choices():
    from pipeline.config import validate_config

    with pytest.raises(ConfigError, match=r"model\.final_norm.*'keep', 'identity'"):
        validate_config(TrainConfig, {"model": {"backbone": "convnext_atto", "final_norm": "none"}})


def test_resnet18_group_norm_study_arm_has_only_group_norms_and_trains_a_fishr_step():
    torch.manual_seed(0)
    network = build_network(ModelConfig(backbone="resnet18", norm_layer="group"))
    norms = [m for m in network.featurizer.modules() if isinstance(m, (nn.GroupNorm, nn.BatchNorm2d))]
    assert len(norms) == 20 and all(isinstance(m, nn.GroupNorm) and m.num_groups == 8 for m in norms)
    algorithm = build("fishr", network.featurizer, network.classifier, 2,
                      {"lambda": 10.0, "penalty_anneal_iters": 0, "batch_size": 2})
    g = torch.Generator().manual_seed(2)
    batches = [(torch.rand(2, 1, 32, 32, generator=g), torch.tensor([0, 1])) for _ in range(2)]
    stats = algorithm.update(batches)
    assert stats["penalty"] > 0 and stats["nll"] > 0
