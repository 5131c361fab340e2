"""Issue 11 (a new user's trial): the report never claims what it did not measure. Each test builds small real
stage outputs (a manifest, metrics.json, audit.json, stage.json files) and checks one kind of finding."""

import pandas as pd

from pipeline.artefacts.stage_file import StageFile
from pipeline.report.cohort import counts_table, direction_sentence, factors_table, trained_sites
from tests.helpers.stage_outputs import group_scores, metrics_file, metrics_json, model_entry
from tests.helpers.stage_record import stage_json


def _frame(rows):
    """rows: (site, split, position, label or None, count)."""
    out = []
    for site, split, position, label, count in rows:
        out += [{"site": site, "domain": site, "split": split, "position": position, "label": label}] * count
    frame = pd.DataFrame(out)
    frame["label"] = frame["label"].astype("Int64")
    return frame


ONE_LEVEL = [("east", "train", "erect", 0, 10), ("east", "train", "erect", 1, 3), ("east", "train", "unknown", 1, 9),
             ("colb", "test", "erect", 1, 16), ("colb", "test", "erect", 0, 1), ("colb", "test", "unknown", 1, 9)]


def test_position_agreement_with_one_known_level_is_not_measured_and_not_highlighted():
    table, _ = counts_table(_frame(ONE_LEVEL))
    agree = {row[0].text: row[-1] for row in table.rows}
    for site in ("east", "colb"):
        assert agree[site].text == "not measured (position has one known level here (erect); the rest unknown)"
        assert "worst" not in agree[site].css
    assert "%" not in " ".join(c.text for c in agree.values())


def test_position_agreement_is_measured_with_both_levels_labelled():
    frame = _frame([("east", "train", "supine", 1, 8), ("east", "train", "erect", 0, 8),
                    ("east", "train", "erect", 1, 4)])
    agree = counts_table(frame)[0].rows[0][-1]
    assert agree.text == "80.0%" and "worst" in agree.css


def test_factor_association_with_one_known_level_in_a_scope_is_not_measured():
    from pipeline.artefacts.ingest_summary import IngestSummary
    from tests.helpers.ingest_outputs import confounding, factor, ingest_summary

    summary = IngestSummary.from_dict(ingest_summary(confounding=confounding(warning_lift=0.15, factors=[
        factor("position", "site=colb", n=26, n_pos=25, auroc=0.65, cramers_v=0.19, chi2_p_value=0.3, accuracy=0.9,
               chance=0.9, lift=0.4),
        factor("position", "all", n=48, n_pos=38, auroc=0.7, lift=0.05)])))
    table = factors_table(summary, _frame(ONE_LEVEL))
    for row in table.rows:
        texts = [c.text for c in row[3:]]
        assert all(t.startswith("not measured (position has one known level here (erect)") for t in texts), texts
        assert not any("worst" in c.css for c in row)
    # without the manifest the ingest's numbers are shown as they are
    assert factors_table(summary).rows[0][3].text.startswith("0.65")


def _train_stage(domains, columns=("domain",)):
    return stage_json("train", training_domains=list(domains), config={"domain_columns": list(columns)})


def test_roles_come_from_the_training_runs_else_say_ingest_split():
    frame = _frame([("Site One", "train", "erect", None, 2), ("Site Two", "val", "erect", None, 2),
                    ("colb", "test", "erect", 1, 2)])
    roles = lambda trained: {r[0].text: r[1].text for r in counts_table(frame, trained=trained)[0].rows}  # noqa: E731
    unknown = roles(None)
    assert unknown["Site One"] == "ingest split train" and unknown["Site Two"] == "ingest split val"
    assert "training" not in " ".join(unknown.values())
    other = trained_sites(frame, {"train: m_erm": StageFile.from_dict(_train_stage(["east", "nord"]))})
    assert other is not None and not other.sites
    assert roles(other)["Site One"] == "ingest split train; not trained on"
    assert "No site of this ingest is one of the training hospitals" in direction_sentence(frame, trained=other)
    mine = trained_sites(frame, {"train: m": StageFile.from_dict(_train_stage(["Site Two"]))})
    assert roles(mine)["Site Two"] == "training" and roles(mine)["Site One"] == "ingest split train; not trained on"
    assert trained_sites(frame, {"train: m": StageFile.from_dict(_train_stage(["x"], columns=("manufacturer",)))}) is None


def _write_json(path, data):
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))


def _audit_only_outputs(tmp_path):
    """An ingest of unlabelled images at 32 px, a training run on other sites, and an audit of that run."""
    ingest = tmp_path / "ingest"
    ingest.mkdir()
    frame = _frame([("Site One", "train", "erect", None, 2), ("Site Two", "val", "erect", None, 1)])
    frame.to_parquet(ingest / "manifest.parquet")
    _write_json(ingest / "cache" / "cache.json", {"n": 3, "size": 32})
    run_dir = tmp_path / "m_erm"
    run_dir.mkdir()
    (run_dir / "model.pt").write_bytes(b"weights")
    _write_json(run_dir / "stage.json", {**_train_stage(["east", "nord"]), "command": ["cxr-fishr", "train"]})
    audit = tmp_path / "audit"
    from tests.helpers.audit_outputs import audit_json, audit_model, interventions, localisation, method

    nm = {"lung_mass_fraction": "no lung mask for these images"}
    maps = method(overall=localisation(n=3, n_valid=0, not_measured=nm))
    model = audit_model("m_erm", split="val", model_dir=str(run_dir), methods={"saliency": maps, "grad_cam": maps},
                        overall=interventions(n=3, n_labelled=0, n_lung_masks=0, n_labelled_lung_masks=0))
    _write_json(audit / "audit.json", audit_json(
        {"m_erm": model}, split="val", ingest_dir=str(ingest), lung_masks={"provided": 0, "estimated": 0, "absent": 3},
        lung_source="none", shortcut_masks=False,
        skipped=[{"metric": "region_ablation_share", "reason": "no region masks at all"}],
        overlays=[{"model": "m_erm", "image_id": "a", "site": "Site One", "position": "erect", "label": None,
                   "prediction": 0, "methods": ["saliency", "grad_cam"], "file": "overlays/a.png"}]))
    (audit / "overlays").mkdir()
    (audit / "overlays" / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    _write_json(audit / "stage.json", stage_json("audit", inputs={"model": {"path": str(run_dir / "model.pt"),
                                                                         "hash": "m"}}))
    return audit


def _page_text(path):
    import html
    import re

    return html.unescape(re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", path.read_text(encoding="utf-8"))))


def test_audit_only_report_of_unlabelled_images_says_what_was_measured_and_judges_no_prediction(tmp_path):
    from pipeline.report import run

    result = run(evaluate_dir=None, audit_dir=_audit_only_outputs(tmp_path), out=tmp_path / "report")
    text = _page_text(result.index)
    assert "No model results were found" not in text
    assert "the audit measured attribution maps (Saliency, Grad-CAM), interventions on 3 images" in text
    assert "no evaluate result, so no accuracy is measured" in text
    # finding 9: an unlabelled image is never right or wrong
    assert "Site One · erect · label unknown" in text and "predicted no finding (label unknown)" in text
    assert "(wrong)" not in text and "(correct)" not in text and "· None" not in text
    # finding 10: the run trained on east/nord, so these train/val sites are not "training" sites
    assert "ingest split train; not trained on" in text and "| training |" not in text
    # finding 15: no empty figure, no heading with an empty body, a flat Grad-CAM gets a note
    assert not (result.out / "fig_localisation.png").exists() and "fig_localisation.png" not in result.figures
    assert "No figure: no attribution mass was measured" in text
    assert "Region ablation: not measured (no region masks at all)" in text
    assert "Grad-CAM at 32 px" in text and "flat" in text


def test_overlay_titles_say_lungs_only_with_a_drawn_mask_and_mark_flat_maps():
    import numpy as np

    from pipeline.audit.overlays import panel_titles

    maps = {"grad_cam": np.full((8, 8), 0.3), "saliency": np.arange(64.0).reshape(8, 8)}
    assert panel_titles(maps, None) == ["image (no lung mask)", "grad cam (flat map)", "saliency"]
    assert panel_titles(maps, np.zeros((8, 8), bool))[0] == "image (no lung mask)"
    lungs = np.zeros((8, 8), bool)
    lungs[2:6, 2:6] = True
    assert panel_titles(maps, lungs, lungs_estimated=True)[0] == "image (lungs (estimated))"


def _metrics_and_audit(lung_masks):
    site = group_scores(n=40, n_pos=20, accuracy=0.7, conflict_accuracy=0.5, aligned_accuracy=0.8, n_conflict=15,
                        n_aligned=25, conflict_attribute="view")
    metrics = metrics_json({"erm": model_entry("erm", val_acc_at_step=0.9, per_site={"colb": site})})
    from tests.helpers.audit_outputs import audit_json, audit_model, localisation, method, region_shares

    counts = {"estimated": {"provided": 0, "estimated": 40, "absent": 0},
              "manifest": {"provided": 40, "estimated": 0, "absent": 0}}[lung_masks]
    model = audit_model("erm", methods={"saliency": method(overall=localisation(lung_mass_fraction=0.4))},
                        abs_share=region_shares(n=40, lungs=0.547, rest=0.453))
    audit = audit_json({"erm": model}, lung_masks=counts, lung_source=lung_masks, shortcut_masks=False)
    return metrics, audit


def _summary(metrics, audit):
    """Section 1 from the two files as the report loads them."""
    from pipeline.artefacts.audit import AuditFile
    from pipeline.artefacts.metrics import MetricsFile
    from pipeline.report.answers import build_summary

    return build_summary(MetricsFile.from_dict(metrics), AuditFile.from_dict(audit))


def test_numbers_on_estimated_lung_masks_say_estimated_where_they_are_shown():
    summary = _summary(*_metrics_and_audit("estimated"))
    answer = summary["answers"][0]
    assert "region ablation puts 54.7% (estimated: lung masks ESTIMATED) of its decision on the lungs" in \
        answer["sentence"]
    assert "54.7% (estimated)" in [c.text for c in summary["headline"].rows[0]]
    plain = _summary(*_metrics_and_audit("manifest"))
    assert "estimated" not in plain["answers"][0]["sentence"]
    assert "54.7%" in [c.text for c in plain["headline"].rows[0]]


def test_summary_wording_conflict_attribute_n_shortcut_share_and_method_not_run():
    summary = _summary(*_metrics_and_audit("manifest"))
    answer = summary["answers"][0]
    assert "50.0% on its 15 images whose view contradicts the label (vs 25 aligned)" in answer["sentence"]
    assert "its share on shortcut regions is not measured (no shortcut mask in the cache)" in answer["sentence"]
    assert "and not measured" not in answer["sentence"]
    assert "view-conflicting images 50% (n=15) vs aligned 80% (n=25)" in answer["verdict"]
    ig = summary["numbers"]["erm"]["not_measured"]["ig_lung_mass_fraction"]
    assert ig == "method not run (audit.methods)"


def test_a_run_whose_selection_found_no_checkpoint_or_a_constant_predictor_is_said_so():
    metrics, audit = _metrics_and_audit("manifest")
    entry = metrics["models"]["erm"]
    entry["selection"].update(step=None, constant_predictor=False, selected=False,
                              reason="every evaluation predicted one class")
    entry["constant_on_split"] = True  # the scored predictions are constant (train's selection check is not that)
    answer = _summary(metrics, audit)["answers"][0]
    assert answer["verdict"].startswith("is a constant predictor (erm")
    assert answer["sentence"].startswith("No checkpoint selected by training-domain validation")
    entry["constant_on_split"] = False
    assert _summary(metrics, audit)["answers"][0]["verdict"].startswith(
        "has no checkpoint selected (erm: every evaluation predicted one class)")


def test_cannot_rank_names_the_models_compared_and_a_non_test_split_is_not_called_test():
    from pipeline.report.site_metrics import reword, site_table

    names = {"erm": "training_domain", "erm@oracle": "oracle", "fishr": "training_domain",
             "fishr@ood_validation": "ood_validation"}
    models = {n: model_entry(n, algorithm=n.split("@")[0], selection_rule=r, split="ood_val", per_site={
        "colc": group_scores(n=30, accuracy=0.5, auroc=0.55, auroc_ci=[0.3, 0.8], conflict_attribute="view",
                             split="ood_val")}) for n, r in names.items()}
    metrics = metrics_file(models, split="ood_val", warnings=[
        "test site colc: the AUROC bootstrap interval (mean width 0.5) is wider than the gap between models (0.01): "
        "this site cannot rank the 3 models"])
    text = reword(metrics.warnings[0], metrics)
    assert "cannot rank the 3 models compared (erm, fishr, fishr@ood_validation; upper-bound rows are not " \
           "compared)" in text
    assert text.startswith("ood_val site colc") and "test site" not in text
    assert "Conflicting = images whose view contradicts the label" in site_table(metrics).note


def test_no_audit_heading_is_left_with_an_empty_body(tmp_path):
    import json

    from pipeline.report import run

    audit = _audit_only_outputs(tmp_path)  # its model has no probe result (audit.json always has interventions)
    assert json.loads((audit / "audit.json").read_text())["models"]["m_erm"]["probe_balanced_accuracy"] == {}
    result = run(evaluate_dir=None, audit_dir=audit, out=tmp_path / "report")
    html = result.index.read_text(encoding="utf-8")
    section = html[html.index('<section id="audit">'):html.index('<section id="landscape">')]
    headings = section.split("<h3>")[1:]
    for part in headings:
        title, body = part.split("</h3>", 1)
        assert _page_text_of(body).strip(), f"heading {title!r} has an empty body"
    assert "No probe was run" in section


def _page_text_of(fragment):
    import re

    return re.sub(r"<[^>]+>", " ", fragment)
