"""COVID-19 pattern: bilateral, peripheral, lower-zone ground-glass opacities, only inside the lungs.

Opacities are placed in lung-box coordinates (u across, v down, [0, 1] over the lung pair), so a counterfactual of
the same patient (same lung fields) carries the identical lesion. Whether an image shows an opacity at all is a
factor (``Factors.opacity_present``): some positives show none, some negatives show a look-alike drawn from the same
distribution, which caps what the lungs alone can predict.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.synth.config import DiseaseConfig


@dataclass(frozen=True)
class Blob:
    v: float
    u: float
    radius: float
    density: float


def sample_blobs(rng: np.random.Generator, disease: DiseaseConfig) -> list[Blob]:
    sides = [-1.0, 1.0] if rng.random() < disease.bilateral else [float(rng.choice([-1.0, 1.0]))]
    blobs = []
    for side in sides:
        count = int(rng.integers(disease.blobs_per_lung[0], disease.blobs_per_lung[1] + 1))
        for _ in range(count):
            lateral = 0.06 + 0.16 * rng.random()  # peripheral: near the lateral lung edge
            blobs.append(
                Blob(
                    v=float(0.52 + 0.36 * rng.random()),  # lower zone
                    u=float(0.5 + side * (0.5 - lateral)),
                    radius=float(rng.uniform(*disease.extent)),
                    density=float(rng.uniform(*disease.density)),
                )
            )
    return blobs


def opacity_layer(
    blobs: list[Blob], v: np.ndarray, u: np.ndarray, lungs: np.ndarray, patchiness: np.ndarray
) -> np.ndarray:
    """Added attenuation (float32), zero outside the lungs; ``patchiness`` is smooth noise giving a mottled edge."""
    total = np.zeros_like(v)
    for blob in blobs:
        r2 = ((v - blob.v) ** 2 + (u - blob.u) ** 2) / np.float32(2 * blob.radius**2)
        np.maximum(total, np.float32(blob.density) * np.exp(-r2), out=total)
    mottle = np.clip(1.0 + 0.35 * patchiness, 0.3, 1.7)
    return (total * mottle * lungs).astype(np.float32)


def lesion_mask(opacity: np.ndarray, lung_mask: np.ndarray, disease: DiseaseConfig) -> np.ndarray:
    """Where the opacity is dense enough to see (half the faintest blob's peak), inside the lung mask."""
    return (opacity > np.float32(disease.density[0] / 2)) & lung_mask
