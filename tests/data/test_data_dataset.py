import numpy as np
import pytest
import torch

from pipeline.cache import ImageCache
from pipeline.data import CacheDataset, eval_loader, images_to_input
from pipeline.errors import DataError
from pipeline.manifest import read_manifest


def test_cache_dataset_items_are_the_cached_rows_in_manifest_order(data_ingest_dir):
    frame = read_manifest(data_ingest_dir).sample(frac=1.0, random_state=0)  # cache order != row order
    cache = ImageCache.open(data_ingest_dir)
    dataset = CacheDataset(cache, frame)
    x, y = dataset.__getitems__([3, 0, 7])
    expected = np.asarray(cache.images[frame["cache_index"].to_numpy()[[3, 0, 7]]], dtype=np.float32)
    assert x.shape == (3, 1, cache.size, cache.size) and x.dtype == torch.float32
    assert torch.equal(x[:, 0], torch.from_numpy(expected))
    assert y.tolist() == frame["label"].to_numpy()[[3, 0, 7]].tolist()
    single_x, single_y = dataset[7]
    assert torch.equal(single_x, x[2]) and int(single_y) == int(y[2])


def test_eval_loader_covers_every_row_once_in_order(data_ingest_dir):
    frame = read_manifest(data_ingest_dir)
    cache = ImageCache.open(data_ingest_dir)
    batches = list(eval_loader(CacheDataset(cache, frame), batch_size=16))
    x = torch.cat([b[0] for b in batches])
    assert torch.equal(x, images_to_input(cache.images[frame["cache_index"].to_numpy()]))


def test_cache_dataset_cache_index_out_of_range_raises_data_error(data_ingest_dir):
    frame = read_manifest(data_ingest_dir).copy()
    frame.loc[frame.index[0], "cache_index"] = 10_000
    with pytest.raises(DataError, match="cache_index must lie in"):
        CacheDataset(ImageCache.open(data_ingest_dir), frame)
