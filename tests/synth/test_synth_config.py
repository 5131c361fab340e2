from pathlib import Path

import pytest
import yaml

from pipeline.errors import ConfigError
from pipeline.synth import run
from pipeline.synth.config import load_cohort_config

DEMO = Path(__file__).resolve().parents[2] / "configs" / "cohort" / "demo.yaml"

CONTRACT_SITES = {
    "north": ("Northgate General Hospital", "train"),
    "east": ("Eastbrook University Hospital", "train"),
    "west": ("Westmoor Community Hospital", "train"),
    "valley": ("Valley Regional Medical Center", "ood_val"),
    "harbour": ("Harbour City Hospital", "test"),
}


def _demo_data():
    return yaml.safe_load(DEMO.read_text())


def test_demo_config_sites_match_the_cross_team_contract(demo_config):
    assert {s.name: (s.institution, s.role) for s in demo_config.sites} == CONTRACT_SITES
    assert 2500 <= sum(s.n for s in demo_config.sites) <= 2900 and demo_config.size == 256


def test_no_shortcut_config_position_independent_of_label():
    config = load_cohort_config(DEMO.parent / "no_shortcut.yaml")
    assert all(s.position_label_agreement == 0.5 and s.children_among_negatives == 0 for s in config.sites)
    assert [s.name for s in config.sites] == list(CONTRACT_SITES)


def test_load_cohort_config_overrides_set_every_site_n():
    config = load_cohort_config(DEMO, n_per_site=7, size=96, seed=3, counterfactual="position")
    assert {s.n for s in config.sites} == {7} and config.size == 96 and config.seed == 3
    assert config.counterfactual == "position"


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (lambda d: d["sites"][0].update(prevalence=1.5), "sites.0.prevalence"),
        (lambda d: d["sites"][1].update(position_label_agreement=-0.1), "sites.1.position_label_agreement"),
        (lambda d: d["sites"][2].update(children_among_negatives=2), "sites.2.children_among_negatives"),
        (lambda d: d["sites"][0].update(role="training"), "['train', 'ood_val', 'test']"),
        (lambda d: d["sites"][0].update(colour="red"), "sites.0.colour"),
        (lambda d: d["sites"][0]["style"].update(photometric="RGB"), "'MONOCHROME1', 'MONOCHROME2'"),
        (lambda d: [s.update(role="test") for s in d["sites"][1:]], "at least two sites must have role 'train'"),
        (lambda d: d["sites"][1].update(name="north"), "site names must be unique"),
        (lambda d: d["sites"][1].update(name="East Brook"), "site name must match"),
        (lambda d: d["disease"].update(opacity_if_positive=1.2), "disease.opacity_if_positive"),
    ],
)
def test_run_bad_config_raises_config_error_and_writes_nothing(tmp_path, edit, expected):
    data = _demo_data()
    edit(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    with pytest.raises(ConfigError) as err:
        run(config=path, out=out, n_per_site=2, size=32, progress=False)
    assert expected in str(err.value) and str(path) in str(err.value)
    assert not out.exists()


def test_run_bad_workers_raises_config_error_and_writes_nothing(tmp_path):
    with pytest.raises(ConfigError, match="workers must be >= 1"):
        run(config=DEMO, out=tmp_path / "out", n_per_site=2, size=32, workers=0, progress=False)
    assert not (tmp_path / "out").exists()


def test_run_out_is_a_file_raises_config_error(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("x")
    with pytest.raises(ConfigError, match="--out must be a directory"):
        run(config=DEMO, out=target, n_per_site=2, size=32, progress=False)
