"""Soft analytic drawing primitives evaluated on coordinate grids (vectorised; no per-pixel Python)."""

from __future__ import annotations

import numpy as np


def soft_step(x: np.ndarray, edge: float) -> np.ndarray:
    """0 -> 1 over about ``edge`` around x = 0 (a clipped linear ramp: cheaper than a sigmoid, smooth enough)."""
    return np.clip(0.5 + x / np.float32(max(edge, 1e-6)), 0.0, 1.0)


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def ellipse(q: np.ndarray, p: np.ndarray, cq: float, cp: float, rq: float, rp: float, edge: float) -> np.ndarray:
    """Soft filled ellipse (1 inside)."""
    r = np.sqrt(((q - cq) / rq) ** 2 + ((p - cp) / rp) ** 2)
    return soft_step((1.0 - r) * min(rq, rp), edge)


def dome(q: np.ndarray, p: np.ndarray, cq: float, cp: float, rq: float, rp: float) -> np.ndarray:
    """Thickness profile of an ellipsoid: sqrt(1 - r^2) inside, 0 outside (dense in the middle, thin at edges)."""
    r2 = ((q - cq) / rq) ** 2 + ((p - cp) / rp) ** 2
    return np.sqrt(np.clip(1.0 - r2, 0.0, 1.0))


def band(q: np.ndarray, centre: np.ndarray, half_width: float, edge: float) -> np.ndarray:
    """Soft band of ``half_width`` around the curve q = centre (centre evaluated per pixel)."""
    return soft_step(half_width - np.abs(q - centre), edge)


def triangle(q: np.ndarray, d: np.ndarray, vertices: list[tuple[float, float]], edge: float) -> np.ndarray:
    """Soft filled triangle, vertices as (q, d); 1 inside, ramps to 0 over ``edge`` at the sides."""
    (q0, d0), (q1, d1), (q2, d2) = vertices
    area = (d1 - d0) * (q2 - q0) - (d2 - d0) * (q1 - q0)
    sign = 1.0 if area > 0 else -1.0
    inside = None
    for (qa, da), (qb, db) in (((q0, d0), (q1, d1)), ((q1, d1), (q2, d2)), ((q2, d2), (q0, d0))):
        length = float(np.hypot(qb - qa, db - da)) or 1.0
        dist = sign * ((db - da) * (q - qa) - (qb - qa) * (d - da)) / length
        inside = dist if inside is None else np.minimum(inside, dist)
    return soft_step(inside, edge)
