"""Rendered pixels and masks, straight from the renderer (no files)."""

import numpy as np
import pytest

from pipeline.regions import SHORTCUT_CODES
from pipeline.synth.factors import sample_factors
from pipeline.synth.render import render

SIZE = 96


def _factors(config, site_name, **changes):
    site = config.site(site_name)
    for index in range(200):
        f = sample_factors(config, site, index)
        if all(getattr(f, k) == v for k, v in changes.items()):
            return site, f
    raise LookupError(changes)


@pytest.mark.parametrize("site_name", ["north", "east", "west", "valley", "harbour"])
def test_render_masks_align_and_lungs_darker_than_body(demo_config, site_name):
    site, f = _factors(demo_config, site_name)
    r = render(demo_config, site, f, size=SIZE)
    assert r.image.shape == r.lungs.shape == r.shortcuts.shape == r.lesion.shape == (SIZE, SIZE)
    assert r.image.dtype == np.float32 and 0.0 <= r.image.min() and r.image.max() <= 1.0
    assert 0.08 < r.lungs.mean() < 0.45
    body = ~r.lungs & (r.shortcuts == 0)
    body &= np.abs(np.arange(SIZE) - SIZE / 2)[None, :] < SIZE * 0.3  # the trunk, not the air beside it
    assert r.image[r.lungs].mean() < r.image[body].mean() - 0.1


def test_render_lesion_only_inside_lungs_and_only_with_opacity(demo_config):
    for index in range(12):
        site = demo_config.site("north")
        f = sample_factors(demo_config, site, index)
        r = render(demo_config, site, f, size=SIZE)
        assert not (r.lesion & ~r.lungs).any()
        assert r.lesion.any() == f.opacity_present


def test_render_opacity_brightens_the_lung_fields(demo_config):
    site, f = _factors(demo_config, "west", opacity_present=True)
    clear = type(f)(**{**f.__dict__, "opacity_present": False})
    ill, healthy = render(demo_config, site, f, size=SIZE), render(demo_config, site, clear, size=SIZE)
    assert (ill.lungs == healthy.lungs).all()
    assert ill.image[ill.lesion].mean() > healthy.image[ill.lesion].mean() + 0.05


def test_render_counterfactual_shares_anatomy_and_disease(demo_config):
    site, f = _factors(demo_config, "north", position="supine", opacity_present=True, devices_present=True)
    twin = f.with_position("erect")
    a, b = render(demo_config, site, f, size=SIZE), render(demo_config, site, twin, size=SIZE)
    assert (a.lungs == b.lungs).all() and (a.lesion == b.lesion).all() and a.lesion.any()
    assert (a.shortcuts == SHORTCUT_CODES["devices"]).any() and not (b.shortcuts == SHORTCUT_CODES["devices"]).any()
    assert not np.allclose(a.image, b.image)


def test_render_supine_scapulae_overlap_the_lungs_erect_do_not(demo_config):
    overlaps = {"supine": [], "erect": []}
    site = demo_config.site("valley")
    for index in range(10):
        f = sample_factors(demo_config, site, index)
        for position in overlaps:
            r = render(demo_config, site, f.with_position(position), size=SIZE)
            scapula = r.shortcuts == SHORTCUT_CODES["scapula_shoulder"]
            overlaps[position].append((scapula & r.lungs).sum() / r.lungs.sum())
    assert np.mean(overlaps["supine"]) > 0.05 and np.mean(overlaps["erect"]) < 0.01


def test_render_site_mark_and_stamp_marked_in_shortcut_mask(demo_config):
    site, f = _factors(demo_config, "north", position="supine", stamp_present=True)
    r = render(demo_config, site, f, size=128)
    assert (r.shortcuts == SHORTCUT_CODES["site_mark"]).any()
    assert (r.shortcuts == SHORTCUT_CODES["text_stamp"]).any()
    erect = render(demo_config, site, f.with_position("erect"), size=128)
    assert not (erect.shortcuts == SHORTCUT_CODES["text_stamp"]).any()
