import math

import pytest

from pipeline.report.tables import Table, cell, ci_cell, mean_std_text, rate_cell


def test_cell_missing_values_read_not_measured_with_reason_and_sort_last():
    assert cell(None).text == "not measured (absent from the results)"
    for value in (float("nan"), math.inf):
        c = cell(value)
        assert c.text == "not measured (not a finite number in the results)" and c.sort is None
    assert cell(None, reason="no lung mask").text == "not measured (no lung mask)"


def test_rate_cell_proportion_shows_percent_and_keeps_numeric_sort_key():
    c = rate_cell(0.8125)
    assert c.text == "81.2%" and c.sort == pytest.approx(0.8125)


def test_ci_cell_with_interval_shows_bounds_without_interval_shows_point():
    assert ci_cell(0.861, [0.8, 0.91]).text == "0.861 [0.80, 0.91]"
    assert ci_cell(0.861, [None, None]).text == "0.861"
    assert ci_cell(None, [0.1, 0.2], reason="one class").text == "not measured (one class)"


def test_mean_std_text_prints_seed_spreads_sample_std_in_its_format():
    from pipeline.artefacts.seeds import SeedSpread

    seeds = SeedSpread.from_values([0.4, 0.6])
    assert mean_std_text(seeds.mean, seeds.sd) == seeds.text() == "50.0% ± 14.1"  # sample sd (n - 1), not 10.0
    assert mean_std_text(seeds.mean, seeds.sd, percent=False) == "0.500 ± 0.141"
    assert mean_std_text(0.5, None) == "50.0%" and mean_std_text(0.5, 0.0) == "50.0%"
    assert mean_std_text(None, None) == "not measured (absent from the results)"


def test_mean_std_text_single_run_hides_std():
    assert mean_std_text(0.3, 0.05, runs=1) == "30.0%"
    assert mean_std_text(0.3, 0.05, runs=3) == "30.0% ± 5.0"


def test_table_add_wrong_row_length_raises():
    table = Table(["a", "b"])
    with pytest.raises(ValueError, match="2 columns"):
        table.add(["only one"])
