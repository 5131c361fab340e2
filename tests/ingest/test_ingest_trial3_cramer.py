"""Third new-user trial, ingest finding 6: Cramer's V is bias-corrected (Bergsma 2013) and its bootstrap interval
(bias-corrected percentile) contains the reported estimate, with and without an association."""

import numpy as np
import pandas as pd
import pytest

from pipeline.ingest.confounding import cramers_v, measure_factor


def _table(values: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return np.array([[np.sum((values == k) & (labels == 0)), np.sum((values == k) & (labels == 1))]
                     for k in np.unique(values)], dtype=np.float64)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("n", [40, 200, 1500])
def test_no_association_gives_a_small_v_inside_its_interval(n, seed):
    rng = np.random.default_rng(seed)
    values, labels = rng.integers(0, 3, n), rng.integers(0, 2, n)
    v, p_value, (low, high) = cramers_v(_table(values, labels))
    assert low <= round(v, 4) <= high
    assert low == 0.0  # no association: the interval reaches 0
    assert v < 0.1 or n < 200 or p_value < 0.05  # small on enough rows unless the draw is significant by chance


def test_no_association_on_many_rows_is_zero_where_the_plain_v_is_not():
    rng = np.random.default_rng(3)
    values, labels = rng.integers(0, 2, 600), rng.integers(0, 2, 600)
    table = _table(values, labels)
    from scipy.stats import chi2_contingency

    plain = float(np.sqrt(chi2_contingency(table, correction=False)[0] / table.sum()))
    v, _, (low, high) = cramers_v(table)
    assert plain > 0.0
    assert v < plain and low <= v <= high


@pytest.mark.parametrize("flip", [0.0, 0.1, 0.3])
def test_strong_association_is_estimated_with_an_interval_around_it(flip):
    rng = np.random.default_rng(7)
    values = rng.integers(0, 2, 800)
    labels = np.where(rng.random(800) < flip, 1 - values, values)
    v, p_value, (low, high) = cramers_v(_table(values, labels))
    truth = 1.0 - 2.0 * flip  # phi of a binary channel flipping a balanced bit with probability ``flip``
    assert low <= round(v, 4) <= high
    assert abs(v - truth) < 0.05 and p_value < 1e-10
    assert high - low < 0.15


def test_measure_factor_reports_an_interval_containing_the_estimate():
    rng = np.random.default_rng(11)
    for n in (30, 120, 500):
        values = pd.Series(rng.choice(["M", "F", "unknown"], n))
        labels = rng.integers(0, 2, n)
        out = measure_factor(values, labels, min_n=20)
        low, high = out["cramers_v_ci95"]
        assert low <= out["cramers_v"] <= high
