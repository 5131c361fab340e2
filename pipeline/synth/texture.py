"""Lung texture: low-frequency noise plus branching vessel-like lines from the hila, fading to the periphery."""

from __future__ import annotations

import numpy as np


def low_frequency(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth noise, ~unit variance, with ``cells`` features across the image (bicubic upsampling of a coarse grid)."""
    from PIL import Image

    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    image = Image.fromarray(coarse, mode="F").resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(image, dtype=np.float32)


def vessel_tree(rng: np.random.Generator, to_pixel, size: int) -> np.ndarray:
    """Draw branching vessels in lung-box coordinates (u across, v down); ``to_pixel(v, u) -> (row, col)``.

    Returns an unblurred float32 (size, size) layer; the site blur gives the lines their width.
    """
    from skimage.draw import line_aa

    canvas = np.zeros((size, size), dtype=np.float32)
    segments: list[tuple[float, float, float, float, float]] = []  # v0, u0, v1, u1, weight
    for side in (-1.0, 1.0):
        hilum_u, hilum_v = 0.5 + side * 0.2, 0.45
        for angle in np.linspace(-1.2, 1.25, 6) + rng.normal(0, 0.12, size=6):
            stack = [(hilum_v, hilum_u, angle, 0.09 + 0.03 * rng.random(), 1.0)]
            while stack:
                v0, u0, a, length, weight = stack.pop()
                v1, u1 = v0 + np.sin(a) * length, u0 + side * np.cos(a) * length
                segments.append((v0, u0, v1, u1, weight))
                if weight > 0.3:  # a meandering trunk that tapers, and a side branch at every node
                    stack.append((v1, u1, a + rng.normal(0, 0.25), length * 0.85, weight * 0.72))
                    turn = 0.5 * (1.0 if rng.random() < 0.5 else -1.0)
                    stack.append((v1, u1, a + turn + rng.normal(0, 0.2), length * 0.6, weight * 0.45))
    seg = np.asarray(segments, dtype=np.float64)
    r0, c0 = to_pixel(seg[:, 0], seg[:, 1])
    r1, c1 = to_pixel(seg[:, 2], seg[:, 3])
    limit = size - 1
    ends = np.clip(np.round(np.stack([r0, c0, r1, c1], axis=1)), 0, limit).astype(int).tolist()
    weights = seg[:, 4].astype(np.float32)
    rows, cols, values = [], [], []
    for (a0, b0, a1, b1), weight in zip(ends, weights, strict=True):
        rr, cc, val = line_aa(a0, b0, a1, b1)
        rows.append(rr)
        cols.append(cc)
        values.append(val.astype(np.float32) * weight)
    np.maximum.at(canvas, (np.concatenate(rows), np.concatenate(cols)), np.concatenate(values))
    return canvas
