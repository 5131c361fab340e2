"""A hospital's acquisition style: intensity transfer curve, exposure, blur, quantum noise, vendor edge enhancement,
collimation borders, and the site's burned-in mark in its own corner (plus the portable stamp's wording and place).
"""

from __future__ import annotations

import numpy as np

from pipeline.regions import SHORTCUT_CODES
from pipeline.synth.config import SiteStyle
from pipeline.synth.glyphs import burn, place, text_bitmap

A_MAX = 1.25  # attenuation mapped to full white before the site's curve


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def display(attenuation: np.ndarray, style: SiteStyle, rng: np.random.Generator) -> np.ndarray:
    """Attenuation -> displayed intensity in [0, 1] (MONOCHROME2: bright = dense)."""
    from scipy import ndimage as ndi

    size = attenuation.shape[0]
    if style.blur > 0:
        attenuation = ndi.gaussian_filter(attenuation, sigma=style.blur * size, truncate=3.0)
    x = np.clip(attenuation / np.float32(A_MAX), 0.0, 1.0) ** np.float32(style.gamma)
    lo, hi = _sigmoid(-style.contrast * 0.5), _sigmoid(style.contrast * 0.5)
    y = (_sigmoid(np.float32(style.contrast) * (x - np.float32(0.5))) - np.float32(lo)) / np.float32(hi - lo)
    y = y + np.float32(style.exposure)
    if style.edge_enhance > 0:
        y = y + np.float32(style.edge_enhance) * (y - ndi.gaussian_filter(y, sigma=0.012 * size, truncate=2.0))
    if style.noise > 0:
        quantum = rng.standard_normal(y.shape, dtype=np.float32)
        y = y + np.float32(style.noise) * np.sqrt(np.clip(1.0 - y, 0.02, 1.0)) * quantum  # more photons, less noise
    return np.clip(y, 0.0, 1.0).astype(np.float32)


def collimate(image: np.ndarray, region: np.ndarray, style: SiteStyle, rng: np.random.Generator) -> None:
    """Unexposed borders outside the collimator blades (bright, flat), in place; marks them in ``region``."""
    size = image.shape[0]
    lo, hi = style.collimation
    widths = np.round(rng.uniform(lo, hi, size=4) * size).astype(int)
    if not widths.any():
        return
    code = SHORTCUT_CODES["collimation"]
    level = np.float32(0.82 + 0.1 * rng.random())
    top, bottom, left, right = (int(w) for w in widths)
    for where in (np.s_[:top, :], np.s_[size - bottom :, :], np.s_[:, :left], np.s_[:, size - right :]):
        image[where] = level
        region[where] = code


def _inside_border(style: SiteStyle, size: int) -> int:
    """Margin that keeps burned-in text inside the widest collimation border (marks never overlap it)."""
    return int(np.ceil(style.collimation[1] * size)) + max(1, size // 40)


def site_mark(image: np.ndarray, region: np.ndarray, style: SiteStyle) -> None:
    size = image.shape[0]
    bitmap = text_bitmap(style.mark_text, max(7, size // 20), style.mark_box)
    where = place(size, bitmap, style.mark_corner, _inside_border(style, size))
    burn(image, region, SHORTCUT_CODES["site_mark"], bitmap, where, 1.0)


def portable_stamp(image: np.ndarray, region: np.ndarray, style: SiteStyle) -> None:
    size = image.shape[0]
    bitmap = text_bitmap(style.stamp_text, max(7, size // 18), False)
    margin = _inside_border(style, size) + (size // 12 if style.stamp_corner == style.mark_corner else 0)
    burn(image, region, SHORTCUT_CODES["text_stamp"], bitmap, place(size, bitmap, style.stamp_corner, margin), 1.0)
