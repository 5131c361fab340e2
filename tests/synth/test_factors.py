"""Statistics of the generative factors, sampled directly (no pixels), so hundreds of images cost milliseconds."""

import numpy as np

from pipeline.synth.factors import sample_factors

N = 600


def _sample(config, site):
    return [sample_factors(config, site, i) for i in range(N)]


def test_sample_factors_prevalence_and_position_agreement_match_each_site(demo_config):
    for site in demo_config.sites:
        factors = _sample(demo_config, site)
        labels = np.array([f.label for f in factors])
        supine = np.array([f.position == "supine" for f in factors])
        agreement = np.mean(np.where(labels == 1, supine, ~supine))
        # binomial standard error at n=600 is ~0.02; 0.06 is three of them
        assert abs(labels.mean() - site.prevalence) < 0.06, site.name
        assert abs(agreement - site.position_label_agreement) < 0.06, site.name
        assert abs(supine[labels == 1].mean() - site.position_label_agreement) < 0.08, site.name
        assert abs((~supine[labels == 0]).mean() - site.position_label_agreement) < 0.08, site.name


def test_sample_factors_children_only_among_negatives_at_configured_rate(demo_config):
    for site in demo_config.sites:
        factors = _sample(demo_config, site)
        children = [f for f in factors if f.child]
        assert all(f.label == 0 and 2 <= f.age_years <= 12 for f in children)
        assert all(f.age_years >= 18 for f in factors if not f.child)
        negatives = sum(f.label == 0 for f in factors)
        assert abs(len(children) / negatives - site.children_among_negatives) < 0.07, site.name


def test_sample_factors_devices_and_stamps_only_in_supine_and_never_on_children(demo_config):
    factors = _sample(demo_config, demo_config.site("north"))
    assert not any(f.devices_present for f in factors if f.position == "erect" or f.child)
    assert not any(f.stamp_present for f in factors if f.position == "erect")
    supine_adults = [f for f in factors if f.position == "supine" and not f.child]
    rate = np.mean([f.devices_present for f in supine_adults])
    assert abs(rate - demo_config.site("north").device_probability) < 0.1


def test_sample_factors_opacity_noise_caps_lung_signal_near_configured_rates(demo_config):
    factors = [f for site in demo_config.sites for f in _sample(demo_config, site)]
    labels = np.array([f.label for f in factors])
    opacity = np.array([f.opacity_present for f in factors])
    assert abs(opacity[labels == 1].mean() - demo_config.disease.opacity_if_positive) < 0.04
    assert abs(opacity[labels == 0].mean() - demo_config.disease.lookalike_if_negative) < 0.04
    assert 0.8 < np.mean(opacity == labels.astype(bool)) < 0.92  # the lungs alone predict the label ~85%


def test_sample_factors_same_inputs_same_factors_other_index_other_patient(demo_config):
    site = demo_config.site("east")
    assert sample_factors(demo_config, site, 5) == sample_factors(demo_config, site, 5)
    assert sample_factors(demo_config, site, 5).patient_id != sample_factors(demo_config, site, 6).patient_id


def test_with_position_changes_only_position_cues(demo_config):
    f = next(f for f in _sample(demo_config, demo_config.site("north")) if f.position == "supine" and f.device_draw)
    twin = f.with_position("erect")
    assert twin.position == "erect" and twin.view == "PA" and not twin.devices_present and not twin.stamp_present
    same = ("label", "child", "age_years", "sex", "opacity_present", "patient_id", "index", "site")
    assert all(getattr(twin, k) == getattr(f, k) for k in same)
    assert twin.with_position("supine") == f
