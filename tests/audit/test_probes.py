import numpy as np
import pytest

from pipeline.audit.probes import ProbeBalancedAccuracy, penultimate_features, probe_chance


def _features(seed=0, n=120):
    rng = np.random.default_rng(seed)
    labels = np.array(["a", "b", "c"])[np.arange(n) % 3]
    centres = {"a": 0.0, "b": 3.0, "c": -3.0}
    x = rng.standard_normal((n, 8))
    x[:, 0] += np.array([centres[v] for v in labels])
    return x, labels


def test_probe_informative_features_scores_near_one():
    x, labels = _features()
    value, note = ProbeBalancedAccuracy(folds=5)(x, labels)
    assert value > 0.9 and note is None


def test_probe_shuffled_labels_scores_chance():
    x, labels = _features()
    shuffled = np.random.default_rng(1).permutation(labels)
    values = [ProbeBalancedAccuracy(folds=5, seed=s)(x, shuffled)[0] for s in range(3)]
    assert abs(np.mean(values) - probe_chance(shuffled)) < 0.12


def test_probe_single_class_returns_nan_with_note():
    value, note = ProbeBalancedAccuracy()(np.zeros((10, 3)), np.array(["adult"] * 10))
    assert np.isnan(value) and "one class" in note


def test_probe_unknown_values_are_dropped():
    x, labels = _features(n=240)
    labels = labels.astype(object)
    labels[::2] = "unknown"
    assert probe_chance(labels) == pytest.approx(1 / 3)
    value, _ = ProbeBalancedAccuracy(folds=3)(x, labels)
    assert value > 0.8


def test_penultimate_features_are_the_head_inputs(lung_reader):
    import torch

    x = torch.rand(3, 1, 32, 32)
    feats = penultimate_features(lung_reader, x)
    assert feats.shape == (3, 1)
    logits = lung_reader.classifier(torch.from_numpy(feats).float())
    assert torch.allclose(logits, lung_reader(x), atol=1e-5)
