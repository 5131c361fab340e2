"""Generative factors of one image, drawn from random streams keyed by (seed, site, index, stream name).

Each stream is independent, so changing one factor (the position, for a counterfactual) never shifts another
draw, and each image depends only on (seed, site, index): workers can render any subset in any order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from pipeline.synth.config import CohortConfig, SiteConfig

FIRST_NAMES = ("ALEX", "JORDAN", "SAM", "TAYLOR", "MORGAN", "CASEY", "RILEY", "JAMIE", "ROBIN", "KIM", "LEE", "NOOR")
LAST_NAMES = ("DOE", "ROE", "SMITH", "JONES", "NGUYEN", "GARCIA", "MUELLER", "ROSSI", "KOWALSKI", "SILVA", "OKAFOR")


def _key(text: str) -> int:
    """A stable 32-bit integer for a name (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")


def stream(seed: int, site: str, index: int, name: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, _key(site), index, _key(name)]))


@dataclass(frozen=True)
class Factors:
    """Everything that decides one patient's image; the render is a pure function of this and the site style."""

    seed: int
    site: str
    index: int
    label: int
    position: str  # "erect" (PA) | "supine" (AP)
    child: bool
    age_years: int
    sex: str
    opacity_present: bool
    devices_present: bool  # only ever in AP supine adults
    stamp_present: bool  # only ever in AP supine
    device_draw: bool  # would have devices if supine (kept for the counterfactual)
    stamp_draw: bool
    patient_id: str
    patient_name: str
    study_days: int  # days after the site's first study date

    @property
    def view(self) -> str:
        return "AP" if self.position == "supine" else "PA"

    @property
    def image_id(self) -> str:
        return f"{self.site}_{self.index:05d}"

    def with_position(self, position: str) -> Factors:
        """The same patient in another position (devices/stamp follow their own draws, which do not change)."""
        supine = position == "supine"
        return Factors(
            **{
                **self.__dict__,
                "position": position,
                "devices_present": supine and self.device_draw and not self.child,
                "stamp_present": supine and self.stamp_draw,
            }
        )


def sample_factors(config: CohortConfig, site: SiteConfig, index: int) -> Factors:
    seed = config.seed
    rng = stream(seed, site.name, index, "factors")
    label = int(rng.random() < site.prevalence)
    agrees = rng.random() < site.position_label_agreement
    supine = agrees if label == 1 else not agrees
    child = label == 0 and bool(rng.random() < site.children_among_negatives)
    age = int(rng.integers(2, 13)) if child else int(np.clip(rng.normal(62, 15), 20, 95))
    sex = "F" if rng.random() < 0.5 else "M"
    opacity_p = config.disease.opacity_if_positive if label else config.disease.lookalike_if_negative
    opacity = bool(rng.random() < opacity_p)
    device_draw = bool(rng.random() < site.device_probability)
    stamp_draw = bool(rng.random() < site.stamp_probability)
    ident = stream(seed, site.name, index, "identity")
    patient_id = f"{site.name[:2].upper()}{int(ident.integers(10**6, 10**7))}"
    patient_name = f"{LAST_NAMES[ident.integers(len(LAST_NAMES))]}^{FIRST_NAMES[ident.integers(len(FIRST_NAMES))]}"
    base = Factors(
        seed=seed, site=site.name, index=index, label=label, position="erect", child=child, age_years=age, sex=sex,
        opacity_present=opacity, devices_present=False, stamp_present=False, device_draw=device_draw,
        stamp_draw=stamp_draw, patient_id=patient_id, patient_name=patient_name,
        study_days=int(ident.integers(0, 240)),
    )
    return base.with_position("supine" if supine else "erect")


def other_position(position: str) -> str:
    return "erect" if position == "supine" else "supine"
