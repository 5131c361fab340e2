"""Localisation metrics of attribution maps against region masks (docs/design/metrics.md), as callable classes.

Each metric: ``__call__(attr: (B, H, W) float, mask: (B, H, W) bool) -> (B,) float64``, NaN where undefined
(empty mask, or no positive attribution at all). A+ = max(A, 0) throughout. Attribution (Captum) stays outside.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pipeline.regions import SHORTCUT_KINDS


def _positive(attr: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(attr, dtype=np.float64), 0.0, None)


def _flat(a: np.ndarray) -> np.ndarray:
    return a.reshape(a.shape[0], -1)


class MassFraction:
    """sum(A+ * M) / sum(A+): the share of positive evidence inside M (relevance mass accuracy)."""

    name = "mass_fraction"
    higher_is_better = True

    def __call__(self, attr: np.ndarray, mask: np.ndarray) -> np.ndarray:
        pos = _flat(_positive(attr))
        m = _flat(np.asarray(mask, dtype=bool))
        total = pos.sum(axis=1)
        inside = (pos * m).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = inside / total
        out[(total <= 0) | (m.sum(axis=1) == 0)] = np.nan
        return out


class LungMassFraction(MassFraction):
    name = "lung_mass_fraction"
    higher_is_better = True


class ShortcutMassFraction(MassFraction):
    """Mass fraction in a shortcut mask (the union of kinds, or one kind's mask)."""

    name = "shortcut_mass_fraction"
    higher_is_better = False


class LungFocusRatio:
    """lung_mass_fraction / (lung area / image area): 1 = no better than a uniform map."""

    name = "lung_focus_ratio"
    higher_is_better = True

    def __call__(self, attr: np.ndarray, mask: np.ndarray) -> np.ndarray:
        m = _flat(np.asarray(mask, dtype=bool))
        area = m.mean(axis=1)
        fraction = LungMassFraction()(attr, mask)
        with np.errstate(invalid="ignore", divide="ignore"):
            out = fraction / area
        out[area == 0] = np.nan
        return out


class PointingGame:
    """1.0 where the arg-max of the Gaussian-smoothed A+ lies inside the mask, else 0.0; NaN for an empty mask or
    a map without a unique peak (all zero or constant: its arg-max would be an arbitrary first pixel)."""

    name = "pointing_game"
    higher_is_better = True

    def __init__(self, sigma: float = 1.0) -> None:
        self.sigma = sigma

    def __call__(self, attr: np.ndarray, mask: np.ndarray) -> np.ndarray:
        from scipy.ndimage import gaussian_filter

        pos = _positive(attr)
        mask = np.asarray(mask, dtype=bool)
        out = np.full(pos.shape[0], np.nan)
        for i in range(pos.shape[0]):
            if not mask[i].any():
                continue
            smooth = gaussian_filter(pos[i], self.sigma) if self.sigma > 0 else pos[i]
            if smooth.max() <= 0 or np.ptp(smooth) <= 1e-6 * smooth.max():
                continue
            out[i] = float(mask[i].flat[int(np.argmax(smooth))])
        return out


def localise(attr: np.ndarray, lungs: np.ndarray | None, shortcuts: np.ndarray | None,
             sigma: float = 1.0) -> dict[str, Any]:
    """Per-image arrays of every localisation metric; metrics whose mask is unavailable (None) are left out.

    ``lungs``: bool (B, H, W); ``shortcuts``: uint8 (B, H, W) codes of pipeline.regions.SHORTCUT_KINDS.
    """
    out: dict[str, Any] = {}
    if lungs is not None:
        out["lung_mass_fraction"] = LungMassFraction()(attr, lungs)
        out["lung_focus_ratio"] = LungFocusRatio()(attr, lungs)
        out["pointing_game"] = PointingGame(sigma)(attr, lungs)
    if shortcuts is not None:
        out["shortcut_mass_fraction"] = ShortcutMassFraction()(attr, shortcuts > 0)
        out["shortcut_mass_fraction_per_kind"] = {
            kind: ShortcutMassFraction()(attr, shortcuts == code) for code, kind in SHORTCUT_KINDS.items()
        }
    return out


def _nanmean(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if finite.size else float("nan")


def summarise(per_image: dict[str, Any], select: np.ndarray | None = None, n: int = 0) -> dict[str, Any]:
    """Means over the non-NaN images (optionally only rows ``select``), with ``n`` and ``n_valid``; every key is
    present, None where its mask is unavailable (``n`` then comes from ``select`` or the argument)."""
    def pick(a: np.ndarray) -> np.ndarray:
        return a if select is None else a[select]

    out: dict[str, Any] = {}
    lead = per_image.get("lung_mass_fraction", per_image.get("shortcut_mass_fraction"))
    if lead is not None:
        out["n"] = int(pick(lead).size)
        out["n_valid"] = int(np.isfinite(pick(lead)).sum())
    else:
        out["n"] = int(np.sum(select)) if select is not None else int(n)
        out["n_valid"] = 0
    reasons: dict[str, str] = {}
    for key in ("lung_mass_fraction", "shortcut_mass_fraction", "lung_focus_ratio", "pointing_game"):
        out[key] = _nanmean(pick(per_image[key])) if key in per_image else None
        if out[key] is None or not np.isfinite(out[key]):
            reasons[key] = _reason(key, key in per_image)
    kinds = per_image.get("shortcut_mass_fraction_per_kind")
    out["shortcut_mass_fraction_per_kind"] = (
        {kind: _nanmean(pick(v)) for kind, v in kinds.items()} if kinds is not None else None
    )
    if kinds is None:
        reasons["shortcut_mass_fraction_per_kind"] = _reason("shortcut_mass_fraction", False)
    for kind, value in (out["shortcut_mass_fraction_per_kind"] or {}).items():
        if not np.isfinite(value):
            reasons[f"shortcut_mass_fraction_per_kind.{kind}"] = ("no image of this group shows this shortcut kind "
                                                                  "with positive attribution on it")
    out["not_measured"] = reasons
    return out


def _reason(key: str, has_mask: bool) -> str:
    mask = "shortcut" if key.startswith("shortcut") else "lung"
    if not has_mask:
        return f"no {mask} mask for these images"
    return (f"no image with a non-empty {mask} mask and positive attribution"
            + (" and a unique peak" if key == "pointing_game" else ""))
