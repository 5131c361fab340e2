"""Fixtures: the same tiny hand-built ingest dir and run dirs as tests/audit (tests/helpers/tiny_cohort.py)."""

from pathlib import Path

import pytest
import torch

from tests.helpers.tiny_cohort import build_ingest, save_run

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def eval_ingest(tmp_path_factory) -> Path:
    return build_ingest(tmp_path_factory.mktemp("eval_ingest"), size=32, n_per_site=16)


@pytest.fixture(scope="session")
def eval_runs(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("eval_runs")
    return [save_run(root / "erm", algorithm="erm", seed=0),
            save_run(root / "fishr", algorithm="fishr", seed=1, selected_rules=(), history=False)]
