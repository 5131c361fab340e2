"""The patient frame: where the patient lies in the image (scale, small rotation, shift).

Anatomy is described in patient coordinates (P across, Q down, both ~[0, 1], midline at P = 0.5) so that one set of
numbers draws an adult or, scaled down, a child. A frame maps image pixels (row, col) to (Q, P) and back.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np


@functools.lru_cache(maxsize=8)
def pixel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = np.mgrid[0:size, 0:size].astype(np.float32)
    rows.setflags(write=False)
    cols.setflags(write=False)
    return rows, cols


@dataclass(frozen=True)
class Frame:
    size: int
    scale: float  # patient size relative to an average adult filling the field of view
    angle: float  # radians, small
    shift_x: float  # fraction of the image
    shift_y: float

    @property
    def matrix(self) -> tuple[np.ndarray, np.ndarray]:
        """(M, o) with (Q, P) = M @ (row, col) + o."""
        c, s = np.cos(self.angle), np.sin(self.angle)
        k = 1.0 / (self.scale * self.size)
        m = np.array([[c * k, -s * k], [s * k, c * k]])
        centre = np.array([(self.size - 1) / 2 + self.shift_y * self.size, (self.size - 1) / 2 + self.shift_x * self.size])
        o = np.array([0.5, 0.5]) - m @ centre
        return m, o

    def grids(self) -> tuple[np.ndarray, np.ndarray]:
        """Patient coordinates (Q, P) of every pixel, float32 (size, size)."""
        rows, cols = pixel_grid(self.size)
        m, o = self.matrix
        q = np.float32(m[0, 0]) * rows + np.float32(m[0, 1]) * cols + np.float32(o[0])
        p = np.float32(m[1, 0]) * rows + np.float32(m[1, 1]) * cols + np.float32(o[1])
        return q, p

    def to_pixel(self, q: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Patient (Q, P) -> pixel (row, col), float."""
        m, o = self.matrix
        inv = np.linalg.inv(m)
        qp = np.stack([np.asarray(q, dtype=float) - o[0], np.asarray(p, dtype=float) - o[1]])
        rc = np.tensordot(inv, qp, axes=1)
        return rc[0], rc[1]
