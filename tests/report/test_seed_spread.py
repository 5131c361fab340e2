"""One estimator of the spread over seeds on one page: the headline table and the aggregate table print the same
sample standard deviation (pipeline/artefacts/seeds.py SeedSpread, ddof 1) for the same seeds."""

import json
import re

from pipeline.report import run
from tests.helpers.stage_outputs import group_scores, metrics_json, model_entry


def test_two_seeds_print_one_sample_std_in_the_headline_and_the_aggregate_table(tmp_path):
    models = {f"erm-s{seed}": model_entry(f"erm-s{seed}", seed=seed,
                                          per_site={"harbour": group_scores(accuracy=accuracy)})
              for seed, accuracy in ((0, 0.50), (1, 0.54))}
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps(metrics_json(models)))
    html = run(evaluate_dir=tmp_path / "eval", audit_dir=None, out=tmp_path / "report").index.read_text()
    # the sd of (0.50, 0.54) with n - 1 is 0.0283: 2.8 points (the population sd, n, would print 2.0)
    headline = html[html.index("Headline: mean"):]
    aggregate = html[html.index("Every selection rule, averaged over seeds"):]
    assert re.search(r"52\.0% ± (\d+\.\d)", headline).group(1) == "2.8"
    assert re.search(r"52\.0% ± (\d+\.\d)", aggregate).group(1) == "2.8"
    assert "± 2.0" not in html
