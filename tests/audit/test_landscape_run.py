"""The landscape part on the tiny cohort: roles, null + reason for unmeasurable sites, audit.json's typed block."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from pipeline.artefacts.landscape import QUANTITIES, LandscapeAudit
from pipeline.audit import run
from pipeline.audit.config import AuditConfig, LandscapeConfig
from pipeline.audit.data import AuditData
from pipeline.audit.landscape.measure import measure_model, site_plans
from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.models import load_model
from tests.helpers.tiny_cohort import unlabel_copy

LAND = LandscapeConfig(enabled=True, images_per_site=8, min_images=4, trace_images=4, trace_probes=2, bootstrap=20)
SMALL = AuditConfig(methods=["saliency"], max_images=4, sanity_images=1, probe_max_images=40, probe_folds=2,
                    batch_size=8, max_intervention_images=16, landscape=LAND)


def _strict_loads(text: str):
    def refuse(token):
        raise AssertionError(f"non-strict JSON token {token}")
    return json.loads(text, parse_constant=refuse)


def test_sites_get_their_roles_and_sampled_rows(ingest_dir):
    data = AuditData.open(ingest_dir, "test")
    plans = {p.site: p for p in site_plans(data.manifest, training_split="train")}
    assert {s: p.role for s, p in plans.items()} == {"north": "training", "east": "training",
                                                     "valley": "ood_val", "harbour": "test"}
    assert set(data.manifest.iloc[plans["north"].rows]["split"]) == {"train"}
    val = {p.site: p for p in site_plans(data.manifest, training_split="val")}
    assert set(data.manifest.iloc[val["north"].rows]["split"]) == {"val"} and val["north"].rows.size == 4


def test_a_site_the_model_left_out_is_a_holdout_not_a_training_site(ingest_dir):
    from pipeline.audit.landscape.measure import trained_sites

    data = AuditData.open(ingest_dir, "test")
    meta = {"training_domains": ["north"], "domain_columns": ["site"]}
    plans = {p.site: p for p in site_plans(data.manifest, training_split="train", trained_on=trained_sites(meta))}
    assert plans["east"].role == "holdout" and plans["east"].splits == ["train", "val"]
    assert plans["east"].rows.size == 16 and plans["north"].role == "training"
    # domains that are not sites say nothing about sites: every train/val site stays a training site
    assert trained_sites({"training_domains": ["north|erect"], "domain_columns": ["site", "position"]}) is None


def test_measure_model_fills_every_site_and_distance(run_dirs, ingest_dir):
    net, _, _ = load_model(run_dirs[0] / "model.pt")
    data = AuditData.open(ingest_dir, "test")
    block = measure_model(net, manifest=data.manifest, cache=data.cache, cfg=LAND, batch_size=8, seed=0, threshold=0.5)
    assert [s.site for s in block.sites] == ["east", "harbour", "north", "valley"]
    for site in block.sites:
        assert site.n == 8 and site.risk is not None and site.hessian_trace is not None
        assert site.trace_probes == 2 and site.hessian_trace_se is not None
    assert set(block.distances) == set(QUANTITIES) == set(block.summaries)
    matrix = np.array(block.distances["gradient_variance"].values, dtype=float)
    assert np.allclose(np.diag(matrix), 0.0) and np.allclose(matrix, matrix.T) and (matrix[0, 1:] > 0).all()
    summary = block.summaries["risk"]
    assert summary.within_training.value == pytest.approx(matrix_value(block, "risk", "east", "north"))
    assert set(summary.per_new_site) == {"harbour", "valley"}
    assert summary.to_new.low <= summary.to_new.high
    assert block.n_head_parameters == 2 * (512 + 1)


def matrix_value(block, quantity, a, b):
    m = block.distances[quantity]
    return m.values[m.sites.index(a)][m.sites.index(b)]


def test_a_site_without_enough_labels_is_null_with_reason(run_dirs, ingest_dir, tmp_path):
    copy = unlabel_copy(ingest_dir, tmp_path / "ingest", site="valley")
    net, _, _ = load_model(run_dirs[0] / "model.pt")
    data = AuditData.open(copy, "test")
    block = measure_model(net, manifest=data.manifest, cache=data.cache, cfg=LAND, batch_size=8, seed=0, threshold=0.5)
    valley = next(s for s in block.sites if s.site == "valley")
    assert valley.n == 0 and valley.risk is None and "fewer than landscape.min_images 4" in valley.not_measured["site"]
    assert matrix_value(block, "risk", "valley", "north") is None
    assert set(block.summaries["risk"].per_new_site) == {"harbour"}


def test_one_training_site_leaves_within_training_null_with_reason(run_dirs, ingest_dir, tmp_path):
    copy = unlabel_copy(ingest_dir, tmp_path / "ingest", site="east")
    net, _, _ = load_model(run_dirs[0] / "model.pt")
    data = AuditData.open(copy, "test")
    block = measure_model(net, manifest=data.manifest, cache=data.cache,
                          cfg=LAND.model_copy(update={"bootstrap": 0, "trace_images": 0}), batch_size=8, seed=0, threshold=0.5)
    within = block.summaries["gradient_mean"].within_training
    assert within.value is None and "1 measured training site" in within.not_measured
    assert block.summaries["gradient_mean"].to_new.low is None  # no bootstrap asked: no interval
    north = next(s for s in block.sites if s.site == "north")
    assert north.hessian_trace is None and "trace_images" in north.not_measured["hessian_trace"]


def test_a_network_without_a_linear_head_is_not_measured(ingest_dir):
    data = AuditData.open(ingest_dir, "test")
    net = nn.Sequential(nn.Flatten(), nn.Linear(32 * 32, 2))
    block = measure_model(net, manifest=data.manifest, cache=data.cache, cfg=LAND, batch_size=8, seed=0, threshold=0.5)
    assert block.sites == [] and "nn.Linear" in block.not_measured["landscape"]


def test_audit_json_carries_the_typed_landscape_block(run_dirs, ingest_dir, tmp_path):
    torch.manual_seed(0)
    result = run(model_dirs=run_dirs, ingest_dir=ingest_dir, out=tmp_path / "on", config=SMALL)
    audit = _strict_loads(result.audit_path.read_text())
    block = LandscapeAudit.model_validate(audit["landscape"])
    assert block.measured and set(block.models) == {"erm", "fishr"} and block.images_per_site == 8
    off = run(model_dirs=run_dirs[:1], ingest_dir=ingest_dir, out=tmp_path / "off",
              config=SMALL.model_copy(update={"landscape": LandscapeConfig()}))
    block = LandscapeAudit.model_validate(_strict_loads(off.audit_path.read_text())["landscape"])
    assert not block.measured and "landscape.enabled is false" in block.reason and block.models == {}


def test_config_refuses_a_bad_landscape_value(tmp_path):
    path = tmp_path / "audit.yaml"
    path.write_text("landscape:\n  enabled: true\n  images_per_site: 1\n")
    with pytest.raises(ConfigError, match="images_per_site"):
        load_config(AuditConfig, path)


def test_bench_audit_landscape_reports_its_parts_per_model():
    from pipeline.benchmarks.audit import landscape

    result = landscape(quick=True, n_sites=3)
    assert result["n_sites"] == 3 and result["config"]["trace_probes"] == 2
    parts = ("seconds_per_site_without_trace", "seconds_per_site_trace", "seconds_bootstrap")
    assert all(result[k] >= 0 for k in parts)
    # per model = sites x (site + trace) + bootstrap, as the docstring says
    expected = 3 * (result["seconds_per_site_without_trace"] + result["seconds_per_site_trace"])
    assert result["seconds_per_model"] == pytest.approx(expected + result["seconds_bootstrap"])
