"""Patient anatomy outside the lungs: soft-tissue thorax, shoulders and arms, spine and mediastinum, heart, ribs,
clavicles, scapulae and humeral heads, abdomen below the diaphragm.

Everything is an attenuation layer (bright = dense) evaluated on patient-frame grids (Q down, P across). Paired
bones use the distance from the midline ``d = |P - 0.5|`` so both sides come from one evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.synth.position import Pose
from pipeline.synth.shapes import band, dome, ellipse, smoothstep, soft_step, triangle

EDGE = 0.006  # soft edge width of structures, patient-frame units


@dataclass(frozen=True)
class Anatomy:
    child: bool
    female: bool
    lung_shape: int  # index into the lung library
    lung_half_width: float
    lung_top: float
    lung_bottom: float
    chest_half_width: float
    heart_shift: float  # heart centre right of the midline (image right = patient left)
    heart_q: float
    heart_rq: float
    heart_rp: float
    rib_spacing: float
    rib_phase: float
    spine_half_width: float
    tissue: float  # soft-tissue density (habitus)
    gastric_bubble: bool

    @property
    def lung_box(self) -> tuple[float, float, float, float]:
        """(top, bottom, left, right) of the lung pair in the patient frame."""
        return self.lung_top, self.lung_bottom, 0.5 - self.lung_half_width, 0.5 + self.lung_half_width


def sample_anatomy(rng: np.random.Generator, *, child: bool, female: bool, n_shapes: int) -> Anatomy:
    u = rng.random(size=14)
    lung_half_width = 0.31 + 0.04 * u[0] + (0.02 if child else 0.0)  # children: rounder thorax
    lung_top = 0.13 + 0.04 * u[1] + (0.04 if child else 0.0)
    lung_bottom = 0.70 + 0.06 * u[2] - (0.04 if child else 0.0)
    heart_scale = 1.12 if child else 1.0  # relatively larger heart in children
    return Anatomy(
        child=child,
        female=female and not child,
        lung_shape=int(rng.integers(n_shapes)),
        lung_half_width=lung_half_width,
        lung_top=lung_top,
        lung_bottom=lung_bottom,
        chest_half_width=lung_half_width + 0.045 + 0.03 * u[3],
        heart_shift=0.035 + 0.03 * u[4],
        heart_q=lung_bottom - 0.14 - 0.03 * u[5],
        heart_rq=(0.095 + 0.02 * u[6]) * heart_scale,
        heart_rp=(0.125 + 0.025 * u[7]) * heart_scale,
        rib_spacing=0.060 + 0.010 * u[8],
        rib_phase=float(u[9]),
        spine_half_width=0.030 + 0.008 * u[10],
        tissue=0.9 + 0.2 * u[11],
        gastric_bubble=bool(u[12] < 0.7),
    )


def soft_tissue(q: np.ndarray, p: np.ndarray, a: Anatomy, pose: Pose) -> np.ndarray:
    """Trunk (thick in the middle, tapering to the waist), neck, shoulders and arms, abdomen."""
    d = np.abs(p - 0.5)
    neck = 0.085
    rise = smoothstep((q - (pose.shoulder_q - 0.06)) / 0.10)
    waist = 1.0 - 0.10 * smoothstep((q - a.lung_bottom) / 0.3)
    trunk_w = (neck + (a.chest_half_width - neck) * rise) * waist
    trunk = soft_step(trunk_w - d, EDGE) * np.sqrt(np.clip(1.0 - (d / (trunk_w + 0.015)) ** 2, 0.0, 1.0))
    arm_centre = a.chest_half_width + 0.075
    arms = dome(q, d, 0.62, arm_centre, 0.50, 0.065) * soft_step(q - pose.shoulder_q - 0.02, 0.06)
    cap = dome(q, d, pose.shoulder_q + 0.06, a.chest_half_width + 0.05, 0.07, 0.085)
    abdomen = smoothstep((q - a.lung_bottom + 0.08) / 0.12) * soft_step(trunk_w - d, EDGE)
    tissue = 0.58 * trunk + 0.40 * np.maximum(arms, cap) + 0.14 * abdomen
    if a.female:
        breasts = dome(q, d, a.lung_bottom - 0.10, a.lung_half_width - 0.10, 0.13, 0.13)
        tissue = tissue + 0.10 * breasts
    return (a.tissue * tissue).astype(np.float32)


def mediastinum(q: np.ndarray, p: np.ndarray, a: Anatomy, pose: Pose) -> np.ndarray:
    """Spine with vertebral bodies, mediastinal soft tissue, heart (magnified when supine)."""
    d = np.abs(p - 0.5)
    vertebrae = 0.75 + 0.25 * np.cos((q / 0.045) * 2 * np.pi) ** 2
    spine = soft_step(a.spine_half_width - d, EDGE) * vertebrae * soft_step(q - 0.02, 0.02)
    width = 0.055 + 0.05 * smoothstep((q - 0.2) / 0.3)
    medi = soft_step(width - np.abs(p - 0.5 - 0.01), 0.02) * soft_step(q - pose.shoulder_q, 0.05)
    m = pose.heart_magnification
    # the heart's long axis points down and to the patient's left: an ellipse in rotated coordinates
    cq, cp = a.heart_q, 0.5 + a.heart_shift * m
    c, s = np.float32(np.cos(0.45)), np.float32(np.sin(0.45))
    hq, hp = (q - cq) * c - (p - cp) * s, (q - cq) * s + (p - cp) * c
    heart = ellipse(hq, hp, 0.0, 0.0, a.heart_rq * m, a.heart_rp * m, 0.02)
    return (0.16 * spine + 0.16 * medi + 0.20 * heart).astype(np.float32)


def ribs(q: np.ndarray, p: np.ndarray, a: Anatomy) -> np.ndarray:
    """Posterior rib arcs (up from the spine, curving down laterally) and fainter anterior ribs."""
    d = np.abs(p - 0.5)
    cage = soft_step(d - 0.035, 0.02) * soft_step(a.chest_half_width - 0.008 - d, EDGE)
    cage = cage * soft_step(q - a.lung_top + 0.04, 0.03) * smoothstep((a.lung_bottom + 0.02 - q) / 0.08)
    posterior = (q + 0.22 * d - 1.5 * d * d) / (a.rib_spacing * (1.0 + 0.5 * (q - a.lung_top))) + a.rib_phase
    r = posterior - np.floor(posterior)
    post = np.clip(1.0 - np.abs(r - 0.5) / 0.24, 0.0, 1.0) ** 0.6
    anterior = (q - 0.55 * d) / (a.rib_spacing * 1.3) + a.rib_phase * 0.7
    r2 = anterior - np.floor(anterior)
    ant = np.clip(1.0 - np.abs(r2 - 0.5) / 0.18, 0.0, 1.0) * soft_step(d - 0.08, 0.04)
    return (cage * (0.10 * post + 0.04 * ant)).astype(np.float32)


def shoulder_girdle(q: np.ndarray, p: np.ndarray, a: Anatomy, pose: Pose) -> tuple[np.ndarray, np.ndarray]:
    """Clavicles, scapulae and humeral heads; returns (attenuation, scapula/shoulder region 0..1)."""
    d = np.abs(p - 0.5)
    span = a.chest_half_width - 0.03
    t = (d - 0.035) / span
    centre = pose.clavicle_q + pose.clavicle_tilt * t - 0.018 * np.sin(np.pi * np.clip(t, 0, 1))
    clavicle = band(q, centre, 0.013, EDGE) * soft_step(t, 0.03) * soft_step(1.0 - t, 0.03)
    medial = a.lung_half_width - pose.scapula_inset
    lateral = a.chest_half_width + 0.06
    top = pose.shoulder_q + 0.03
    scapula = triangle(q, d, [(top + 0.02, medial + 0.02), (top + 0.36, medial + 0.06), (top + 0.03, lateral)], EDGE)
    spine_of_scapula = band(q, top + 0.07 + 0.02 * (d - medial) / 0.1, 0.008, EDGE) * scapula
    humerus = ellipse(q, d, pose.shoulder_q + 0.07, a.chest_half_width + 0.075, 0.048, 0.045, EDGE)
    shaft = soft_step(0.024 - np.abs(d - a.chest_half_width - 0.09), EDGE) * soft_step(q - pose.shoulder_q - 0.08, EDGE)
    bone = 0.22 * clavicle + 0.16 * scapula + 0.08 * spine_of_scapula + 0.22 * np.maximum(humerus, 0.7 * shaft)
    region = np.maximum(scapula, humerus)
    return bone.astype(np.float32), region.astype(np.float32)


def gastric_bubble(q: np.ndarray, p: np.ndarray, a: Anatomy) -> np.ndarray:
    if not a.gastric_bubble:
        return np.zeros_like(q)
    return (0.14 * ellipse(q, p, a.lung_bottom + 0.035, 0.5 + a.lung_half_width * 0.5, 0.03, 0.05, 0.01)).astype(
        np.float32
    )
