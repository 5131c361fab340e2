import numpy as np
import torch

from pipeline.audit.sanity import randomised_copy, rank_correlation
from pipeline.models import ModelConfig, build_network


def test_randomised_copy_changes_weights_and_keeps_original():
    torch.manual_seed(0)
    net = build_network(ModelConfig(backbone="resnet10t"))
    with torch.no_grad():
        net.classifier.weight.fill_(0.5)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    rand = randomised_copy(net, seed=3)
    assert not torch.equal(rand.classifier.weight, net.classifier.weight)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    assert not torch.equal(randomised_copy(net, seed=4).featurizer.conv1[0].weight, rand.featurizer.conv1[0].weight)


def test_rank_correlation_identical_maps_is_one_and_constant_map_is_nan():
    a = np.random.default_rng(0).random((2, 6, 6))
    b = a.copy()
    b[1] = 1.0
    out = rank_correlation(a, b)
    assert out[0] == 1.0 and np.isnan(out[1])


def test_rank_correlation_independent_maps_is_near_zero():
    rng = np.random.default_rng(0)
    out = rank_correlation(rng.random((4, 32, 32)), rng.random((4, 32, 32)))
    assert np.all(np.abs(out) < 0.15)
