import numpy as np
import pytest

from pipeline.audit.localisation import (
    LungFocusRatio,
    LungMassFraction,
    MassFraction,
    PointingGame,
    localise,
    summarise,
)


@pytest.fixture
def half_mask():
    mask = np.zeros((2, 8, 8), dtype=bool)
    mask[:, :, :4] = True
    return mask


def test_mass_fraction_all_inside_mask_returns_one(half_mask):
    attr = np.where(half_mask, 1.0, -3.0)  # negative evidence outside must not count (A+)
    assert np.allclose(MassFraction()(attr, half_mask), 1.0)


def test_mass_fraction_none_inside_mask_returns_zero(half_mask):
    attr = np.where(half_mask, 0.0, 2.0)
    assert np.allclose(MassFraction()(attr, half_mask), 0.0)


def test_mass_fraction_empty_mask_returns_nan(half_mask):
    attr = np.random.default_rng(0).random((2, 8, 8))
    empty = np.zeros_like(half_mask)
    assert np.isnan(LungMassFraction()(attr, empty)).all()
    assert np.isnan(LungFocusRatio()(attr, empty)).all()
    assert np.isnan(PointingGame()(attr, empty)).all()


def test_mass_fraction_no_positive_attribution_returns_nan(half_mask):
    assert np.isnan(MassFraction()(-np.ones((2, 8, 8)), half_mask)).all()


def test_lung_focus_ratio_constant_attribution_returns_one(half_mask):
    out = LungFocusRatio()(np.full((2, 8, 8), 0.7), half_mask)
    assert np.allclose(out, 1.0)


def test_pointing_game_constant_attribution_returns_nan(half_mask):
    assert np.isnan(PointingGame(sigma=1.0)(np.ones((2, 8, 8)), half_mask)).all()


def test_pointing_game_peak_inside_and_outside_scores_one_and_zero(half_mask):
    attr = np.zeros((2, 8, 8))
    attr[0, 3, 1] = 5.0   # inside the mask
    attr[1, 3, 6] = 5.0   # outside
    assert PointingGame(sigma=1.0)(attr, half_mask).tolist() == [1.0, 0.0]


def test_localise_without_masks_leaves_lung_metrics_out():
    attr = np.ones((1, 4, 4))
    out = localise(attr, None, np.ones((1, 4, 4), dtype=np.uint8) * 2)
    assert "lung_mass_fraction" not in out
    assert out["shortcut_mass_fraction_per_kind"]["devices"][0] == pytest.approx(1.0)
    assert np.isnan(out["shortcut_mass_fraction_per_kind"]["text_stamp"][0])  # kind absent: empty mask


def test_summarise_skips_nan_images_and_counts_valid(half_mask):
    attr = np.stack([np.where(half_mask[0], 1.0, 0.0), np.zeros((8, 8))])
    summary = summarise(localise(attr, half_mask, None))
    assert summary["n"] == 2 and summary["n_valid"] == 1
    assert summary["lung_mass_fraction"] == pytest.approx(1.0)
    assert summary["shortcut_mass_fraction"] is None


def test_summarise_without_any_mask_returns_every_key_as_none():
    summary = summarise(localise(np.ones((3, 4, 4)), None, None), n=3)
    assert summary["n"] == 3 and summary["n_valid"] == 0
    assert summary["lung_mass_fraction"] is None and summary["shortcut_mass_fraction_per_kind"] is None
