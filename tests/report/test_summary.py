import pytest

from pipeline.report.answers import verdict
from pipeline.report.headline import headline, spread
from tests.helpers.audit_outputs import audit_json, audit_model, interventions
from tests.helpers.stage_outputs import group_scores, metrics_file, model_entry


def _numbers(**means):
    # the conflict gap is evidence only with MIN_GROUP_N images per group: these have enough
    return {**{k: {"mean": v, "std": None} for k, v in means.items()}, "n_conflict": 25, "n_aligned": 25}


def test_verdict_conflict_gap_over_20_points_says_shortcuts():
    text, css = verdict(_numbers(conflict_accuracy=0.1), aligned=0.9)
    assert "shortcuts" in text and css == "bad"


def test_verdict_small_gap_few_flips_lung_heavy_ablation_says_lungs():
    numbers = _numbers(conflict_accuracy=0.8, counterfactual_flip_rate=0.05, region_ablation_lungs=0.7,
                       region_ablation_shortcuts=0.1)
    text, css = verdict(numbers, aligned=0.85)
    assert text.startswith("mostly uses lung evidence (measured: ") and css == "good"
    assert "70%" in text and "gap 5 points" in text


def test_verdict_without_behavioural_measurements_cannot_judge():
    text, css = verdict(_numbers(ig_lung_mass_fraction=0.9), aligned=None)
    assert text.startswith("cannot be judged") and css == ""


def test_spread_skips_missing_and_gives_sample_std():
    result = spread([0.2, None, 0.4, float("nan")])
    assert result["mean"] == pytest.approx(0.3) and result["std"] == pytest.approx(0.1414, abs=1e-4)
    assert result["n"] == 2 and result["values"] == [0.2, 0.4] and spread([0.5])["std"] is None
    assert spread([0.50, 0.54])["std"] == pytest.approx(0.0283, abs=1e-4)  # sample sd (n - 1), not 0.020


def test_headline_groups_seeds_by_algorithm_and_rule_and_matches_audit_by_name():
    def entry(name, seed, rule, acc):
        return model_entry(name, seed=seed, selection_rule=rule, per_site={"harbour": group_scores(accuracy=acc)})

    from pipeline.artefacts.audit import AuditFile

    metrics = metrics_file({"erm-s0": entry("erm-s0", 0, "training_domain", 0.3),
                            "erm-s1": entry("erm-s1", 1, "training_domain", 0.5),
                            "erm-s0@oracle": entry("erm-s0@oracle", 0, "oracle", 0.9)})
    audit = AuditFile.from_dict(audit_json({"erm-s0": audit_model(
        "erm-s0", overall=interventions(counterfactual_flip_rate=0.6))}))
    lines = headline(metrics, audit)
    erm = lines["erm"]
    assert erm["selection_rule"] == "training_domain" and erm["seeds"] == [0, 1]
    assert erm["test_site_accuracy"]["mean"] == pytest.approx(0.4)
    assert erm["counterfactual_flip_rate"]["values"] == [0.6]
    assert list(erm["by_rule"]) == ["training_domain", "oracle"] and erm["by_rule"]["oracle"]["upper_bound"]
    assert erm["by_rule"]["oracle"]["counterfactual_flip_rate"]["mean"] is None


def test_disagreements_compare_algorithms_not_seeds_and_flag_contrary_method():
    from pipeline.artefacts.audit import AuditModel
    from pipeline.report.shortcut_audit import disagreements
    from tests.helpers.audit_outputs import audit_model, localisation, method, region_shares

    def entry(algorithm, ablation_shortcut, ig_shortcut):
        return AuditModel.model_validate(audit_model(
            algorithm, algorithm=algorithm,
            region_ablation_share={"overall": region_shares(scapula_shoulder=ablation_shortcut), "per_site": {}},
            methods={"integrated_gradients": method(overall=localisation(shortcut_mass_fraction=ig_shortcut))}))

    same_algorithm = {"f-s0": entry("fishr", 0.4, 0.1), "f-s1": entry("fishr", 0.0, 0.5)}
    assert disagreements(same_algorithm) == []
    contrary = {"erm-s0": entry("erm", 0.6, 0.2), "fishr-s0": entry("fishr", 0.1, 0.4)}
    lines = disagreements(contrary)
    assert len(lines) == 1 and "Integrated Gradients disagrees" in lines[0] and "erm depends more" in lines[0]
    agreeing = {"erm-s0": entry("erm", 0.6, 0.5), "fishr-s0": entry("fishr", 0.1, 0.2)}
    assert disagreements(agreeing) == []
