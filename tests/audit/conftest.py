"""Fixtures: a tiny hand-built ingest dir (32 px) and the networks whose evidence is known by construction."""

from pathlib import Path

import pytest
import torch

from tests.helpers.tiny_cohort import build_ingest, lung_template, region_reader, save_run, stamp_template

torch.set_num_threads(1)
SIZE = 32


@pytest.fixture(scope="session")
def ingest_dir(tmp_path_factory) -> Path:
    return build_ingest(tmp_path_factory.mktemp("ingest"), size=SIZE, n_per_site=16)


@pytest.fixture(scope="session")
def ingest_no_lungs(tmp_path_factory) -> Path:
    return build_ingest(tmp_path_factory.mktemp("ingest_nolungs"), size=SIZE, n_per_site=8, with_lungs=False,
                        with_counterfactuals=False)


@pytest.fixture(scope="session")
def lung_reader():
    return region_reader(lung_template(SIZE))


@pytest.fixture(scope="session")
def shortcut_reader():
    return region_reader(stamp_template(SIZE))


@pytest.fixture(scope="session")
def run_dirs(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("runs")
    return [save_run(root / "erm", algorithm="erm", seed=0), save_run(root / "fishr", algorithm="fishr", seed=1)]
