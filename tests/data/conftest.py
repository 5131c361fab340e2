import pytest

from tests.helpers.tiny_cohort import TRAIN_SITES, build_ingest


@pytest.fixture(scope="session")
def data_ingest_dir(tmp_path_factory):
    return build_ingest(tmp_path_factory.mktemp("data_toy"), sites=TRAIN_SITES, n_per_site=20, size=32, seed=1)
