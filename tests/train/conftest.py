"""Tiny ingest directories for the training tests (32 px).

``ingest_dir``: the synthetic cohort (synth, n_per_site 40, 64 px) ingested at 32 px, once per session, when both
``pipeline.synth.run`` and ``pipeline.ingest.run`` exist; until then, ``toy_ingest_dir``. ``toy_ingest_dir``: the
tests' tiny ingest (tests/helpers/tiny_cohort.py, three training hospitals; same design: a lung-field signal and a
position shortcut that reverses at the test site).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers.tiny_cohort import TRAIN_SITES, build_ingest

TINY_MODEL = {"backbone": "resnet10t", "norm_layer": "group"}
REPO = Path(__file__).resolve().parents[2]
COHORT_CONFIG = REPO / "configs" / "cohort" / "demo.yaml"
INGEST_CONFIG = REPO / "configs" / "ingest" / "synth_demo.yaml"


def _synth_and_ingest_available() -> bool:
    try:
        from pipeline.ingest import run as ingest_run  # noqa: F401
        from pipeline.synth import run as synth_run  # noqa: F401
    except ImportError:
        return False
    return COHORT_CONFIG.is_file() and INGEST_CONFIG.is_file()


@pytest.fixture(scope="session")
def toy_ingest_dir(tmp_path_factory):
    return build_ingest(tmp_path_factory.mktemp("toy_ingest"), sites=TRAIN_SITES, n_per_site=40, size=32, seed=0)


@pytest.fixture(scope="session")
def ingest_dir(toy_ingest_dir, tmp_path_factory):
    if not _synth_and_ingest_available():
        return toy_ingest_dir
    from pipeline.ingest import run as ingest_run
    from pipeline.synth import run as synth_run

    root = tmp_path_factory.mktemp("synth_ingest")
    cohort = synth_run(config=COHORT_CONFIG, out=root / "synth", n_per_site=40, size=64, seed=0)
    result = ingest_run(source=cohort.out / "dicom", out=root / "ingest", metadata=cohort.out / "labels.csv",
                        config=INGEST_CONFIG, size=32)
    return result.out


@pytest.fixture(scope="session")
def one_domain_ingest_dir(tmp_path_factory):
    sites = {name: TRAIN_SITES[name] for name in ("north", "harbour")}
    return build_ingest(tmp_path_factory.mktemp("one_domain"), sites=sites, n_per_site=12, size=32)


@pytest.fixture
def tiny_config():
    """Factory of run configs small enough for CI: 32 px, resnet10t with group norm, a handful of steps."""
    return make_tiny_config


def make_tiny_config(**overrides):
    base = {
        "algorithm": "erm", "hparams": {"lr": 1e-3, "batch_size": 8}, "model": dict(TINY_MODEL),
        "steps": 6, "eval_every": 3, "checkpoint_every": 3, "eval_batch_size": 64, "device": "cpu", "seed": 0,
    }
    base.update(overrides)
    return base
