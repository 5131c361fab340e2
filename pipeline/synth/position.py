"""Patient position: PA erect vs AP supine (the slide's "standing up vs lying down").

AP supine (portable, in bed): the scapulae cannot be rotated out, so they overlap the upper lateral lung fields;
the shoulders ride higher and the clavicles project higher and more horizontal; the heart, far from the detector
and imaged from the front, is magnified by ~15-20%. Devices and stamps are drawn in devices.py / render.py.

The lung fields themselves are kept identical across positions, so a counterfactual pair differs only in the
position cues (see docs/synth.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Pose:
    supine: bool
    shoulder_q: float  # height of the shoulder line (patient frame, smaller = higher)
    clavicle_q: float  # height of the clavicles' medial ends
    clavicle_tilt: float  # lateral end minus medial end (negative = lateral end higher)
    scapula_inset: float  # how far the scapula's medial border reaches inside the lung edge (negative = outside)
    heart_magnification: float


def sample_pose(position: str, rng: np.random.Generator) -> Pose:
    """Position-dependent geometry; both positions' jitters are drawn every time so that a counterfactual (the
    same stream, the other position) keeps the patient's own variation."""
    jitter = rng.normal(0.0, 1.0, size=5)
    erect = Pose(
        supine=False,
        shoulder_q=0.14 + 0.01 * jitter[0],
        clavicle_q=0.20 + 0.01 * jitter[1],
        clavicle_tilt=-0.065 + 0.01 * jitter[2],
        scapula_inset=-0.035 + 0.01 * jitter[3],
        heart_magnification=1.0 + 0.03 * jitter[4],
    )
    if position == "erect":
        return erect
    return Pose(
        supine=True,
        shoulder_q=erect.shoulder_q - 0.05,
        clavicle_q=erect.clavicle_q - 0.05,
        clavicle_tilt=-0.012 + 0.006 * jitter[2],
        scapula_inset=0.14 + 0.015 * jitter[3],
        heart_magnification=1.18 + 0.03 * jitter[4],
    )
