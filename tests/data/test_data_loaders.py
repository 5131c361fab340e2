import numpy as np
import pytest
import torch

from pipeline.cache import ImageCache
from pipeline.data import AugmentConfig, CacheDataset, DomainBatchSampler, DomainLoader, build_augmentation
from pipeline.errors import DataError
from pipeline.manifest import read_manifest


@pytest.fixture(scope="module")
def north(data_ingest_dir):
    frame = read_manifest(data_ingest_dir)
    cache = ImageCache.open(data_ingest_dir)
    return CacheDataset(cache, frame[frame["site"] == "north"], build_augmentation(AugmentConfig(), cache.size))


def _take(loader, n):
    return [loader.next() for _ in range(n)]


def test_domain_batch_sampler_each_epoch_visits_every_row_once():
    sampler = DomainBatchSampler(n=10, batch_size=5, seed=3)
    first_epoch = [p for k in (0, 1) for p, _ in sampler.batch(k)]
    second_epoch = [p for k in (2, 3) for p, _ in sampler.batch(k)]
    assert sorted(first_epoch) == sorted(second_epoch) == list(range(10))
    assert first_epoch != second_epoch  # reshuffled per epoch


def test_domain_loader_same_seed_gives_same_augmented_batches(north):
    a = _take(DomainLoader(north, batch_size=4, seed=5), 3)
    b = _take(DomainLoader(north, batch_size=4, seed=5), 3)
    c = _take(DomainLoader(north, batch_size=4, seed=6), 3)
    assert all(torch.equal(x[0], y[0]) and torch.equal(x[1], y[1]) for x, y in zip(a, b, strict=True))
    assert not all(torch.equal(x[0], y[0]) for x, y in zip(a, c, strict=True))


def test_domain_loader_augments_training_batches(north):
    x, _ = DomainLoader(north, batch_size=8, seed=5).next()
    plain = CacheDataset.__new__(CacheDataset)
    plain.__dict__.update({**north.__dict__, "augment": None})
    positions = [p for p, _ in DomainBatchSampler(len(north), 8, 5).batch(0)]
    raw, _ = plain.__getitems__(positions)
    assert not torch.equal(x, raw)
    assert torch.allclose(x.mean(), raw.mean(), atol=0.1)  # augmentation, not a different image


def test_domain_loader_resume_replays_the_uninterrupted_stream(north):
    straight = _take(DomainLoader(north, batch_size=4, seed=5), 6)
    first = DomainLoader(north, batch_size=4, seed=5)
    _take(first, 4)
    resumed = DomainLoader(north, batch_size=4, seed=5)
    resumed.load_state_dict(first.state_dict())
    assert all(torch.equal(x[0], y[0]) for x, y in zip(straight[4:], _take(resumed, 2), strict=True))


def test_domain_loader_worker_processes_give_the_same_stream(north):
    main = _take(DomainLoader(north, batch_size=4, seed=5), 3)
    workers = _take(DomainLoader(north, batch_size=4, seed=5, num_workers=2), 3)
    assert all(torch.equal(x[0], y[0]) for x, y in zip(main, workers, strict=True))


def test_domain_loader_state_from_other_data_raises_data_error(north):
    loader = DomainLoader(north, batch_size=4, seed=5)
    with pytest.raises(DataError, match="batch_size must match"):
        loader.load_state_dict({**loader.state_dict(), "batch_size": 8})


def test_augmentation_affine_is_seeded_and_moderate():
    images = torch.rand(16, 1, 32, 32)
    seeds = list(range(16))
    aug = build_augmentation(AugmentConfig(affine_prob=1.0, noise_prob=0, contrast_prob=0), 32)
    out = aug(images, seeds)
    assert out.shape == images.shape
    assert torch.equal(out, aug(images, seeds))  # seeded
    change = (out - images).abs().mean().item()
    assert 0.01 < change < 0.3, change


def test_augmentation_disabled_or_all_zero_probabilities_is_none():
    assert build_augmentation(AugmentConfig(enabled=False), 32) is None
    assert build_augmentation(AugmentConfig(affine_prob=0, noise_prob=0, contrast_prob=0), 32) is None


def test_augment_config_gamma_out_of_order_raises_config_error():
    from pipeline.config import validate_config
    from pipeline.errors import ConfigError

    with pytest.raises(ConfigError, match="gamma_low"):
        validate_config(AugmentConfig, {"gamma_low": 1.5, "gamma_high": 1.2})


def test_augmentation_keeps_label_free_of_flips():
    # A bright left half must stay on the left: no horizontal flip among the transforms.
    images = torch.zeros(8, 1, 32, 32)
    images[..., :16] = 1.0
    out = build_augmentation(AugmentConfig(affine_prob=1.0, noise_prob=0, contrast_prob=0), 32)(images, range(8))
    assert bool((out[..., :12].mean(dim=(1, 2, 3)) > out[..., 20:].mean(dim=(1, 2, 3))).all())
    assert np.isfinite(out.numpy()).all()
