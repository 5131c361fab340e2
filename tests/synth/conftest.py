"""A small real cohort shared by the synth tests (every site of the demo config, 64 px, with counterfactuals)."""

from pathlib import Path

import pytest

DEMO = Path(__file__).resolve().parents[2] / "configs" / "cohort" / "demo.yaml"


@pytest.fixture(scope="session")
def demo_config():
    from pipeline.synth.config import load_cohort_config

    return load_cohort_config(DEMO)


@pytest.fixture(scope="session")
def small_cohort(tmp_path_factory):
    from pipeline.synth import run

    out = tmp_path_factory.mktemp("cohort")
    return run(config=DEMO, out=out, n_per_site=6, size=64, counterfactual="position", workers=2, progress=False)
