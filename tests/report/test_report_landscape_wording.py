"""The landscape sentences: estimates and intervals at one precision (never an estimate printed outside its
printed interval), a normalised distance at its ceiling said so, negative Hessian traces remarked on, and the
Fisher-Hessian correlation worded from its shuffled-label baseline."""

import re

import numpy as np

from pipeline.artefacts.landscape import (
    QUANTITIES,
    DistanceMatrix,
    DistanceSummary,
    Estimate,
    ModelLandscape,
    SiteLandscape,
)
from pipeline.report.landscape import estimate_text, model_sentence, sites_table, summary_table


def _numbers(text: str) -> list[float]:
    return [float(x) for x in re.findall(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?", text)]


def test_estimate_and_interval_share_a_precision_and_the_estimate_prints_inside():
    assert estimate_text(Estimate(value=0.0069, low=0.0055, high=0.0159)).split(" [")[0] == "0.007"
    rng = np.random.default_rng(0)
    for _ in range(2000):
        scale = 10.0 ** rng.uniform(-6, 4)
        low, value, high = np.sort(rng.normal(0, 1, 3)) * scale
        text = estimate_text(Estimate(value=float(value), low=float(low), high=float(high)))
        shown = _numbers(text)
        assert shown[1] <= shown[0] <= shown[2], text
        decimals = {len(x.split(".")[1]) if "." in x else 0 for x in re.findall(r"-?\d+(?:\.\d+)?", text)}
        assert len(decimals) == 1, text


def _site(name, role, trace, *, corr=0.999, low=0.998, high=1.0, shuffled=None):
    return SiteLandscape(site=name, role=role, splits=["train"], n=8, n_labelled=8, risk=0.5, accuracy=0.75,
                         fisher_hessian_correlation=corr, fisher_hessian_correlation_low=low,
                         fisher_hessian_correlation_high=high, shuffled_label_correlation=shuffled,
                         hessian_trace=trace, hessian_trace_se=20.0, trace_images=4, trace_probes=2)


def _model(sites, within=Estimate(value=2.95, low=2.9, high=2.9987)) -> ModelLandscape:
    summary = DistanceSummary(within_training=within, to_new=within, per_new_site={})
    names = [s.site for s in sites]
    matrix = DistanceMatrix(sites=names, values=[[0.0] * len(names)] * len(names), normalised_by="mean norm")
    return ModelLandscape(sites=sites, distances=dict.fromkeys(QUANTITIES, matrix),
                          summaries=dict.fromkeys(QUANTITIES, summary), n_head_parameters=6, n_parameters=9,
                          seconds=1.0, distance_ceiling=float(len(sites)))


def test_ceiling_and_negative_traces_are_said():
    text = model_sentence("erm", _model([_site("a", "training", -139.0), _site("b", "training", -354.0),
                                         _site("c", "test", 762.0)]))
    assert "at the ceiling 3" in text and "negative at 2 of 3 sites" in text and "not at a minimum" in text
    assert "a -139 ± 20 (SE)" in text
    cells = [c.text for row in summary_table({"erm": _model([_site(x, "training", 1.0) for x in "abc"])}).rows
             for c in row]
    assert "2.950 [2.900, 2.999] (at the ceiling 3)" in cells
    reach = estimate_text(Estimate(value=0.9, low=0.0, high=2.99), ceiling=3.0)
    assert reach.startswith("0.9 [0.0, 3.0] (its interval reaches the ceiling 3")
    below = model_sentence("erm", _model([_site("a", "training", 5.0), _site("b", "training", 6.0),
                                          _site("c", "test", 7.0)], within=Estimate(value=0.5, low=0.4, high=0.6)))
    assert "ceiling" not in below and "negative" not in below


def test_correlation_is_worded_from_the_shuffled_label_baseline():
    same = Estimate(value=0.9985, low=0.997, high=0.9995)
    flat = model_sentence("erm", _model([_site("a", "training", 5.0, shuffled=same),
                                         _site("b", "training", 5.0, shuffled=same), _site("c", "test", 5.0)]))
    assert "labels shuffled within the site" in flat and "does not support Fishr's argument" in flat
    assert "averages 1 on training sites" not in flat
    lower = Estimate(value=0.95, low=0.94, high=0.96)
    up = model_sentence("fishr", _model([_site("a", "training", 5.0, shuffled=lower),
                                         _site("b", "training", 5.0, shuffled=lower), _site("c", "test", 5.0)]))
    assert "goes beyond what the feature magnitudes give" in up
    old = model_sentence("erm", _model([_site("a", "training", 5.0), _site("b", "training", 5.0)]))
    assert "no shuffled-label baseline" in old and "not read as support" in old
    table = sites_table({"erm": _model([_site("a", "training", -139.0, shuffled=same)])})
    assert "corr, labels shuffled" in table.columns
