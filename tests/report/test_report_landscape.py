"""Report section "Same landscape at every hospital?": computed sentences, figure, tables, not-measured reasons."""

import json

import pytest

from pipeline.artefacts.landscape import (
    QUANTITIES,
    DistanceMatrix,
    DistanceSummary,
    Estimate,
    LandscapeAudit,
    ModelLandscape,
    SiteLandscape,
)
from pipeline.errors import DataError
from pipeline.report import run
from pipeline.report.landscape import build_landscape, compare, comparison_line, model_sentence
from tests.helpers.audit_outputs import audit_json

SITES = ("east", "harbour", "north")


def _site(name, role, trace, se):
    return SiteLandscape(site=name, role=role, splits=["train" if role == "training" else role], n=8, n_labelled=8,
                         risk=0.5, accuracy=0.75, gradient_mean_norm=0.1, gradient_variance_norm=0.2,
                         hessian_diagonal_norm=0.3, fisher_hessian_correlation=0.9, hessian_trace=trace,
                         hessian_trace_se=se, trace_images=4, trace_probes=2)


def _model(within: Estimate, to_new: Estimate) -> ModelLandscape:
    summary = DistanceSummary(within_training=within, to_new=to_new, per_new_site={"harbour": to_new})
    matrix = DistanceMatrix(sites=list(SITES), values=[[0.0, 1.0, 2.0], [1.0, 0.0, 1.0], [2.0, 1.0, 0.0]],
                            normalised_by="mean norm over the measured sites")
    return ModelLandscape(sites=[_site("east", "training", 10.0, 1.0), _site("harbour", "test", 14.0, 2.0),
                                 _site("north", "training", 12.0, 1.0)],
                          distances=dict.fromkeys(QUANTITIES, matrix), summaries=dict.fromkeys(QUANTITIES, summary),
                          n_head_parameters=6, n_parameters=100, seconds=1.0)


APART = (Estimate(value=0.1, low=0.05, high=0.15), Estimate(value=0.5, low=0.4, high=0.6))
OVERLAP = (Estimate(value=0.3, low=0.2, high=0.45), Estimate(value=0.4, low=0.3, high=0.5))


def test_compare_reads_the_intervals():
    assert compare(*APART) == "new sites sit 5.0x farther than the training sites sit from each other (intervals apart)"
    assert "overlap" in compare(*OVERLAP)
    assert "closer" in compare(APART[1], APART[0])
    assert "point estimates" in compare(Estimate(value=0.1), Estimate(value=0.2))
    assert "not measured" in compare(Estimate(value=None, not_measured="x"), APART[1])


def test_model_sentence_is_computed_from_the_numbers():
    text = model_sentence("fishr", _model(*APART))
    assert "0.10 [0.05, 0.15]" in text and "0.50 [0.40, 0.60]" in text and "5.0x farther" in text
    # training-site trace: mean(10, 12) = 11 with SE sqrt(1 + 1) / 2 = 0.71; the new site 14 +- 2
    assert "11.00 ± 0.71 (SE) on training sites and 14.0 ± 2.0 (SE) on new sites" in text
    assert "averages 0.9 on training sites" in text
    other = model_sentence("erm", _model(*OVERLAP))
    assert "0.30 [0.20, 0.45]" in other and "overlap" in other


def test_comparison_line_ranks_models_and_says_when_it_cannot():
    line = comparison_line({"erm": _model(*OVERLAP), "fishr": _model(*APART)})
    assert line.startswith("Closest gradient variances between training sites: fishr (0.10 [0.05, 0.15]), then erm")
    assert line.endswith("the intervals are apart.")  # 0.15 < 0.2
    near = _model(Estimate(value=0.12, low=0.1, high=0.3), APART[1])
    line = comparison_line({"erm": near, "fishr": _model(*APART)})
    assert "then erm (0.12 [0.10, 0.30])" in line and "overlap, so this sample cannot rank them" in line
    assert comparison_line({"fishr": _model(*APART)}) is None


def _audit_dir(tmp_path, landscape):
    """An audit folder whose audit.json holds ``landscape`` (None: the key left out, as before the landscape part)."""
    audit = tmp_path / "audit"
    audit.mkdir()
    payload = audit_json({})  # valid, then the block under test put in as it is (valid or not)
    del payload["landscape"]
    if landscape is not None:
        payload["landscape"] = landscape
    (audit / "audit.json").write_text(json.dumps(payload))
    return audit


def test_report_renders_the_section_with_figure_and_tables(tmp_path):
    block = LandscapeAudit(measured=True, images_per_site=8, trace_images_per_site=4, trace_probes=2, bootstrap=20,
                           training_split="train", min_images=4,
                           models={"erm": _model(*OVERLAP), "fishr": _model(*APART)})
    result = run(evaluate_dir=None, audit_dir=_audit_dir(tmp_path, block.model_dump(mode="json")),
                 out=tmp_path / "report")
    html = result.index.read_text()
    assert "Same landscape at every hospital?" in html and 'src="fig_landscape.png"' in html
    assert (result.out / "fig_landscape.png").read_bytes()[:4] == b"\x89PNG"
    assert "fishr: the head-gradient variances" in html and "erm: the head-gradient variances" in html
    assert "gradient variance ||V_a - V_b||" in html and "to harbour" in html
    assert "Distance matrices (site x site) (24 rows)" in html  # 2 models x 4 quantities x 3 sites


def test_report_says_not_measured_with_the_reason(tmp_path):
    reason = "landscape.enabled is false in the audit config"
    landscape = {"schema_version": 1, "measured": False, "reason": reason}
    result = run(evaluate_dir=None, audit_dir=_audit_dir(tmp_path, landscape), out=tmp_path / "report")
    html = result.index.read_text()
    assert f"Not measured: {reason}" in html and "fig_landscape.png" not in html
    assert build_landscape(None, tmp_path).reason == "Not measured: no audit results were found."


@pytest.mark.parametrize(("landscape", "words"), [
    (None, "landscape: Field required"),  # an audit.json from before the landscape part
    ({"schema_version": 1, "measured": "perhaps", "models": 3}, "landscape.measured"),
])
def test_an_audit_without_a_valid_landscape_block_is_a_data_error_naming_it(tmp_path, landscape, words):
    with pytest.raises(DataError, match=f"audit.json does not match AuditFile.*{words}.*Re-run `cxr-fishr audit`"):
        run(evaluate_dir=None, audit_dir=_audit_dir(tmp_path, landscape), out=tmp_path / "report")


def test_sentence_without_trace_or_correlation_says_not_measured():
    model = _model(*APART)
    sites = [s.model_copy(update={"hessian_trace": None, "hessian_trace_se": None,
                                  "fisher_hessian_correlation": None}) for s in model.sites]
    text = model_sentence("erm", model.model_copy(update={"sites": sites}))
    assert "Hessian trace is not measured" in text and "corr(V_e, diag H_e) is not measured" in text
    assert "n/a" not in text and "nan" not in text.lower()
