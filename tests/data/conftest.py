import pytest

from pipeline.data.toy import write_toy_ingest


@pytest.fixture(scope="session")
def data_ingest_dir(tmp_path_factory):
    return write_toy_ingest(tmp_path_factory.mktemp("data_toy"), n_per_site=20, size=32, seed=1)
