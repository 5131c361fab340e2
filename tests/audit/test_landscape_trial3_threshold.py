"""The landscape's per-site accuracy is the checkpoint's: at its threshold, with class counts, majority baseline
and constant flag, and the report's landscape table names them like every other accuracy."""

import math

import numpy as np
import torch

from pipeline.audit.config import LandscapeConfig
from pipeline.audit.data import AuditData
from pipeline.audit.landscape.measure import measure_model
from pipeline.models import load_model
from pipeline.report.landscape import sites_table

LAND = LandscapeConfig(enabled=True, images_per_site=6, min_images=4, trace_images=0, trace_probes=1, bootstrap=0)


def _constant_net(run_dir, p_positive: float):
    """The run's network with a head that ignores the features: P(label = 1) = ``p_positive`` for every image."""
    net, _, _ = load_model(run_dir / "model.pt")
    with torch.no_grad():
        net.classifier.weight.zero_()
        net.classifier.bias.copy_(torch.tensor([0.0, math.log(p_positive / (1 - p_positive))]))
    return net


def test_site_accuracy_uses_the_checkpoint_threshold_not_the_argmax(run_dirs, ingest_dir):
    data = AuditData.open(ingest_dir, "test")
    net = _constant_net(run_dirs[0], 0.3)  # arg-max says negative everywhere; threshold 0.25 says positive
    block = measure_model(net, manifest=data.manifest, cache=data.cache, cfg=LAND, batch_size=8, seed=0,
                          threshold=0.25)
    for site in block.sites:
        assert site.threshold == 0.25 and site.constant_predictor is True
        assert site.n_pos + site.n_neg == site.n == 6 and site.n_labelled >= site.n
        assert np.isclose(site.accuracy, site.n_pos / site.n)  # every image predicted positive
        assert np.isclose(site.majority_accuracy, max(site.n_pos, site.n_neg) / site.n)
    low = measure_model(net, manifest=data.manifest, cache=data.cache, cfg=LAND, batch_size=8, seed=0,
                        threshold=0.9)
    assert all(np.isclose(s.accuracy, s.n_neg / s.n) for s in low.sites)


def test_report_landscape_table_names_threshold_majority_and_constant(run_dirs, ingest_dir):
    data = AuditData.open(ingest_dir, "test")
    net = _constant_net(run_dirs[0], 0.3)
    block = measure_model(net, manifest=data.manifest, cache=data.cache, cfg=LAND, batch_size=8, seed=0,
                          threshold=0.25)
    table = sites_table({"m": block})
    header = [h.lower() for h in table.columns]
    assert "threshold" in header and "always-majority" in header
    html = str([[c.text if hasattr(c, "text") else c for c in row] for row in table.rows])
    assert "constant predictor" in html and "0.25" in html
    assert " of 16" in html  # n sampled of the labelled pool: what each count means is said


def test_a_model_trained_on_domain_meaning_site_has_its_training_sites_known():
    from pipeline.audit.landscape.measure import trained_sites

    meta = {"training_domains": ["north"], "domain_columns": ["domain"],
            "trained_on": {"ingest_domain_columns": ["Site"]}}
    assert trained_sites(meta) == {"north"}
    other = {**meta, "trained_on": {"ingest_domain_columns": ["site", "sex"]}}
    assert trained_sites(other) is None  # domains like 'north|M' are not sites
