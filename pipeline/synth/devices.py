"""ICU devices of a patient imaged AP supine: ECG electrodes and their leads, endotracheal tube, central venous line,
nasogastric tube. Drawn as attenuation (metal and radiopaque stripes are dense) in the patient frame.
"""

from __future__ import annotations

import numpy as np

from pipeline.synth.anatomy import Anatomy
from pipeline.synth.frame import Frame


def _polyline(canvas: np.ndarray, rows: np.ndarray, cols: np.ndarray, value: float, width: int = 1) -> None:
    from skimage.draw import line_aa

    limit = canvas.shape[0] - 1
    r = np.clip(np.round(rows), 0, limit).astype(int)
    c = np.clip(np.round(cols), 0, limit).astype(int)
    for i in range(len(r) - 1):
        rr, cc, val = line_aa(r[i], c[i], r[i + 1], c[i + 1])
        for dc in range(width):
            c2 = np.clip(cc + dc, 0, limit)
            canvas[rr, c2] = np.maximum(canvas[rr, c2], np.float32(value) * val)


def _curve(start: tuple[float, float], control: tuple[float, float], end: tuple[float, float], n: int = 16):
    t = np.linspace(0.0, 1.0, n)[:, None]
    pts = (1 - t) ** 2 * np.array(start) + 2 * (1 - t) * t * np.array(control) + t**2 * np.array(end)
    return pts[:, 0], pts[:, 1]  # (q, p)


def draw_devices(rng: np.random.Generator, frame: Frame, anatomy: Anatomy) -> np.ndarray:
    """float32 (size, size) attenuation of the devices of one patient (drawn from its own random stream)."""
    from skimage.draw import disk

    size = frame.size
    canvas = np.zeros((size, size), dtype=np.float32)
    px = frame.size * frame.scale  # pixels per patient-frame unit
    line_width = max(1, round(px / 200))
    draws = rng.random(size=8)
    lw = anatomy.lung_half_width
    # ECG electrodes: metal snap in a ring, leads running off the image
    sites = [(0.10, 0.5 - lw + 0.04), (0.10, 0.5 + lw - 0.04), (0.22, 0.5 - lw - 0.02), (0.24, 0.5 + lw + 0.02),
             (anatomy.lung_bottom + 0.02, 0.5 + lw - 0.02)]
    chosen = [s for s, keep in zip(sites, rng.random(size=len(sites)) < 0.75, strict=True) if keep]
    for q0, p0 in chosen:
        q0, p0 = q0 + rng.normal(0, 0.015), p0 + rng.normal(0, 0.015)
        r, c = frame.to_pixel(np.array([q0]), np.array([p0]))
        radius = max(2.0, 0.02 * px)
        rr, cc = disk((r[0], c[0]), radius, shape=canvas.shape)
        canvas[rr, cc] = np.maximum(canvas[rr, cc], 0.35)
        rr, cc = disk((r[0], c[0]), radius * 0.45, shape=canvas.shape)
        canvas[rr, cc] = 0.95
        end = (float(rng.uniform(-0.1, 0.05)), float(np.clip(p0 + rng.normal(0, 0.25), -0.1, 1.1)))
        ctrl = (float(q0 + rng.normal(0, 0.15)), float(p0 + rng.normal(0, 0.15)))
        rows, cols = frame.to_pixel(*_curve((q0, p0), ctrl, end))
        _polyline(canvas, rows, cols, 0.7, line_width)
    if draws[0] < 0.6:  # endotracheal tube: walls plus a radiopaque stripe, tip above the carina
        tip = anatomy.lung_top + 0.10 + 0.05 * draws[1]
        for offset, value in ((-0.012, 0.25), (0.012, 0.25), (0.004, 0.8)):
            rows, cols = frame.to_pixel(np.array([-0.05, tip]), np.array([0.5 + offset, 0.5 + offset]))
            _polyline(canvas, rows, cols, value, line_width)
    if draws[2] < 0.55:  # central venous line from the right subclavian vein into the superior vena cava
        side = 0.5 - lw * 0.6
        q, p = _curve((0.16, side), (0.20, 0.5 - 0.02), (0.36 + 0.05 * draws[3], 0.5 - 0.025))
        q2, p2 = _curve((-0.05, side - 0.12), (0.08, side), (0.16, side))
        rows, cols = frame.to_pixel(np.concatenate([q2, q]), np.concatenate([p2, p]))
        _polyline(canvas, rows, cols, 0.75, line_width)
    if draws[4] < 0.45:  # nasogastric tube down the oesophagus into the stomach
        q, p = _curve((-0.05, 0.49), (anatomy.lung_bottom - 0.1, 0.5), (anatomy.lung_bottom + 0.08, 0.5 + lw * 0.5))
        rows, cols = frame.to_pixel(q, p)
        _polyline(canvas, rows, cols, 0.6, line_width)
    return canvas
