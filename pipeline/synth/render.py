"""Render one image (and its masks) from its factors: a pure function of (config, site, factors).

Every random draw comes from a stream named after what it decides (see factors.stream), so the counterfactual of a
patient (``factors.with_position(...)``) shares anatomy, lungs, texture, disease and noise, and differs only in
what the position changes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from pipeline.regions import SHORTCUT_CODES
from pipeline.synth import anatomy as anat
from pipeline.synth.config import CohortConfig, SiteConfig
from pipeline.synth.devices import draw_devices
from pipeline.synth.disease import lesion_mask, opacity_layer, sample_blobs
from pipeline.synth.factors import Factors, stream
from pipeline.synth.frame import Frame
from pipeline.synth.lungs import LIBRARY_SIZE, lung_library, warp_lungs
from pipeline.synth.position import sample_pose
from pipeline.synth.site_style import collimate, display, portable_stamp, site_mark
from pipeline.synth.texture import low_frequency, vessel_tree

LUNG_AIR = 0.45  # attenuation removed by aerated lung


@dataclass(frozen=True)
class Rendered:
    image: np.ndarray  # float32 (S, S) in [0, 1], MONOCHROME2 (bright = dense)
    lungs: np.ndarray  # bool (S, S)
    shortcuts: np.ndarray  # uint8 (S, S), pipeline.regions codes
    lesion: np.ndarray  # bool (S, S)


def sample_frame(rng: np.random.Generator, size: int, child: bool) -> Frame:
    scale = rng.uniform(0.70, 0.80) if child else rng.uniform(0.94, 1.02)
    return Frame(size=size, scale=float(scale), angle=float(rng.normal(0, 0.02)),
                 shift_x=float(rng.normal(0, 0.012)), shift_y=float(rng.normal(0, 0.012)))


def render(config: CohortConfig, site: SiteConfig, f: Factors, size: int | None = None) -> Rendered:
    size = size or config.size

    def rng(name: str) -> np.random.Generator:
        return stream(f.seed, f.site, f.index, name)

    library = lung_library()
    frame = sample_frame(rng("frame"), size, f.child)
    a = anat.sample_anatomy(rng("anatomy"), child=f.child, female=f.sex == "F", n_shapes=len(library))
    pose = sample_pose(f.position, rng("pose"))
    q, p = frame.grids()

    # lungs: a real lung-pair shape warped onto the patient's lung box
    top, bottom, left, right = a.lung_box
    m, o = frame.matrix
    scale = np.diag([LIBRARY_SIZE / (bottom - top), LIBRARY_SIZE / (right - left)])
    lungs = warp_lungs(library[a.lung_shape], scale @ m, scale @ (o - np.array([top, left])) - 0.5, size)
    lung_mask = lungs > 0.5
    v = (q - np.float32(top)) * np.float32(1 / (bottom - top))
    u = (p - np.float32(left)) * np.float32(1 / (right - left))

    def lung_to_pixel(vv, uu):
        return frame.to_pixel(top + np.asarray(vv) * (bottom - top), left + np.asarray(uu) * (right - left))

    texture_rng = rng("texture")
    texture = low_frequency(texture_rng, size, 14)
    patchiness = low_frequency(texture_rng, size, 20)
    vessels = ndi.gaussian_filter(vessel_tree(rng("vessels"), lung_to_pixel, size), sigma=0.004 * size, truncate=2.0)

    girdle, scapula_region = anat.shoulder_girdle(q, p, a, pose)
    attenuation = anat.soft_tissue(q, p, a, pose)
    attenuation += anat.mediastinum(q, p, a, pose)
    attenuation += anat.ribs(q, p, a)
    attenuation += girdle
    attenuation -= anat.gastric_bubble(q, p, a)
    # aerated depth: lungs are thin at their edges and thick in the middle, so edges fade instead of cutting
    depth = np.clip(ndi.gaussian_filter(lungs, sigma=0.02 * size, truncate=2.0) * 1.6, 0.0, 1.0)
    air = np.float32(LUNG_AIR) * (np.float32(0.55) + np.float32(0.45) * depth)
    attenuation -= lungs * (air - np.float32(0.03) * texture - np.float32(0.16) * vessels)

    blobs = sample_blobs(rng("disease"), config.disease)  # drawn always, so streams never depend on the label
    if f.opacity_present:
        opacity = opacity_layer(blobs, v, u, lungs, patchiness)
        attenuation += opacity
        lesion = lesion_mask(opacity, lung_mask, config.disease)
    else:
        lesion = np.zeros_like(lung_mask)

    shortcuts = np.zeros((size, size), dtype=np.uint8)
    shortcuts[scapula_region > 0.5] = SHORTCUT_CODES["scapula_shoulder"]
    if f.devices_present:
        devices = draw_devices(rng("devices"), frame, a)
        attenuation += devices
        shortcuts[devices > 0.15] = SHORTCUT_CODES["devices"]

    style = site.style
    image = display(attenuation, style, rng("noise"))
    if f.stamp_present:
        portable_stamp(image, shortcuts, style)
    site_mark(image, shortcuts, style)
    collimate(image, shortcuts, style, rng("collimation"))
    return Rendered(image=image, lungs=lung_mask, shortcuts=shortcuts, lesion=lesion)
