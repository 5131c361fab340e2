"""Labels served to training are known (pd.NA refused), and a domain smaller than the batch never yields a short
(e.g. 1-sample) batch: the sampler wraps into the next epoch, so every batch has batch_size images."""

from __future__ import annotations

import pandas as pd
import pytest

from pipeline.cache import ImageCache
from pipeline.data import CacheDataset, DomainBatchSampler, DomainLoader, label_array
from pipeline.errors import DataError
from pipeline.manifest import labelled, read_manifest


def test_label_array_refuses_unknown_labels_and_keeps_known_ones():
    rows = pd.DataFrame({"label": pd.array([1, pd.NA, 0], dtype="Int64")})
    with pytest.raises(DataError, match=r"label must be known for every row .*got 1 unknown of 3"):
        label_array(rows)
    assert label_array(labelled(rows)).tolist() == [1, 0]


def test_cache_dataset_over_unlabelled_rows_is_a_data_error(data_ingest_dir):
    frame = read_manifest(data_ingest_dir)
    frame.loc[frame.index[:2], "label"] = pd.NA
    with pytest.raises(DataError, match="got 2 unknown"):
        CacheDataset(ImageCache.open(data_ingest_dir), frame)


@pytest.mark.parametrize("n_rows", [1, 2, 3])
def test_domain_smaller_than_the_batch_yields_full_batches_only(data_ingest_dir, n_rows):
    frame = read_manifest(data_ingest_dir)
    rows = frame[frame["split"] == "train"].iloc[:n_rows]
    loader = DomainLoader(CacheDataset(ImageCache.open(data_ingest_dir), rows), batch_size=8, seed=0)
    for _ in range(5):
        x, y = loader.next()
        assert x.shape[0] == 8 and y.shape[0] == 8
    # every row is in every batch of 8 (the batch holds 8 // n_rows or more copies of each)
    sampler = DomainBatchSampler(n_rows, batch_size=8, seed=0)
    assert all({p for p, _ in sampler.batch(k)} == set(range(n_rows)) for k in range(5))
