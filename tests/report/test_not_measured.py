"""A missing number is never 0 and never NaN on the page: it reads "not measured (<reason>)"."""

import json
import math
import re
from html.parser import HTMLParser

import pandas as pd

from pipeline.report import run
from pipeline.report.cohort import ages_table
from pipeline.report.shortcut_audit import ablation_table, localisation_table
from pipeline.report.tables import fmt_num, fmt_rate, mean_std_text, num_cell, rate_cell
from tests.helpers.audit_outputs import audit_json, audit_model, interventions, localisation, method, region_shares
from tests.helpers.stage_outputs import group_scores, metrics_json, model_entry


class _Text(HTMLParser):
    def __init__(self):
        super().__init__()
        self.parts, self._skip = [], False

    def handle_starttag(self, tag, attrs):
        self._skip = tag in ("script", "style")

    def handle_endtag(self, tag):
        self._skip = False

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def _page_text(path):
    parser = _Text()
    parser.feed(path.read_text(encoding="utf-8"))
    return re.sub(r"\s+", " ", " ".join(parser.parts))


def test_every_formatter_renders_none_and_nan_as_not_measured_with_reason():
    for value in (None, float("nan"), math.inf):
        for text in (fmt_rate(value, reason="r1"), fmt_num(value, reason="r1"),
                     rate_cell(value, reason="r1").text, num_cell(value, reason="r1").text,
                     mean_std_text(value, None, reason="r1")):
            assert text == "not measured (r1)"
    assert rate_cell(0.0).text == "0.0%"  # a measured zero stays a zero


def test_shortcut_numbers_without_shortcut_masks_are_not_measured_even_if_audit_wrote_zeros():
    from pipeline.artefacts.audit import AuditModel

    shares = region_shares(n=8, lungs=0.6, rest=0.4, scapula_shoulder=0.0, devices=0.0, text_stamp=0.0)
    maps = method(overall=localisation(n=8, lung_mass_fraction=0.5, shortcut_mass_fraction=0.0))
    entry = AuditModel.model_validate(audit_model("m", abs_share=shares, methods={"saliency": maps}))
    ablation = ablation_table({"m": entry}, shortcut_masks=False)
    texts = [c.text for c in ablation.rows[0]]
    assert "60.0%" in texts and "0.0%" not in texts
    assert texts[-1] == "not measured (no shortcut mask in the cache)"
    local = [c.text for c in localisation_table({"m": entry}, shortcut_masks=False).rows[0]]
    assert "not measured (no shortcut mask in the cache)" in local and "0.0%" not in local


def test_female_share_when_sex_unknown_for_every_image_is_not_measured_not_zero():
    frame = pd.DataFrame({"site": ["a"] * 4, "split": ["train"] * 4, "sex": ["unknown"] * 4,
                          "age_group": ["adult", "unknown", "child", "adult"], "age_years": [50.0, None, 8.0, 60.0],
                          "position": ["erect"] * 4, "label": [0, 1, 0, 1]})
    table, _ = ages_table(frame)
    texts = [c.text for c in table.rows[0]]
    assert "not measured (sex unknown for every image)" in texts
    assert "33.3%" in texts  # children among the three known age groups
    assert texts[-1] == "4"  # sex unknown count


def _write(directory, name, data):
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(json.dumps(data), encoding="utf-8")


def test_page_from_outputs_with_missing_numbers_has_no_nan_and_says_not_measured(tmp_path):
    # typed stage outputs hold None plus a reason where a number was not measured (a NaN is refused on load)
    block = group_scores(n=10, n_pos=8, accuracy=0.8, not_measured={
        "auroc": "one class only", "conflict_accuracy": "position unknown for every image"})
    metrics = metrics_json({"erm-s0": model_entry("erm-s0", per_site={"harbour": block}, overall=block,
                                                  mean={"accuracy": 0.8})})
    overall = interventions(n=10, accuracy=0.8, not_measured={
        "lung_only_accuracy": "no lung mask for these images", "counterfactual_flip_rate": "no counterfactual arrays"})
    audit = audit_json({"erm-s0": audit_model("erm-s0", overall=overall, abs_share=region_shares(n=10, rest=1.0))},
                       lung_masks={"provided": 0, "estimated": 0, "absent": 10}, shortcut_masks=False)
    _write(tmp_path / "eval", "metrics.json", metrics)
    _write(tmp_path / "audit", "audit.json", audit)
    result = run(evaluate_dir=tmp_path / "eval", audit_dir=tmp_path / "audit", out=tmp_path / "report")
    text = _page_text(result.index)
    assert not re.search(r"\bnan\b", text, re.IGNORECASE)
    assert "not measured (one class only)" in text
    assert "not measured (position unknown for every image)" in text
    assert "not measured (no lung mask for these images)" in text
    assert "not measured (no counterfactual arrays)" in text
    assert "erm cannot be judged" in text and "lungs" in text
    assert "mostly uses lung evidence" not in text
    assert "80.0% (≤ majority)" in text  # 8 of 10 positive: 80% is the majority rate, not skill


def test_a_p_value_below_one_in_a_thousand_never_reads_zero():
    from pipeline.ingest.summary import _p_text
    from pipeline.report.tables import p_cell

    assert p_cell(1e-12).text == "<0.001" and p_cell(0.0123).text == "0.012"
    assert "not measured" in p_cell(None, reason="one level only").text
    assert _p_text(2e-9) == "p<0.001" and _p_text(0.03) == "p=0.03"
