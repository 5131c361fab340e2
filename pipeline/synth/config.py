"""The cohort config (``configs/cohort/*.yaml``): sites, their confounding, their acquisition style, the disease.

Validated at load so a bad value fails before anything is written. Probabilities live in [0, 1]; a cohort needs at
least two training sites (domain generalisation needs domains to generalise from).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from pipeline.config import StrictModel, read_yaml, validate_config
from pipeline.errors import ConfigError

Corner = Literal["top_left", "top_right", "bottom_left", "bottom_right"]
SITE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


class SiteStyle(StrictModel):
    """How a hospital's machines and habits shape its images (and its DICOM headers)."""

    modality: Literal["CR", "DX"] = "DX"
    manufacturer: str = "Generic Imaging"
    model_name: str = "XR-1"
    photometric: Literal["MONOCHROME1", "MONOCHROME2"] = "MONOCHROME2"
    bits_stored: Literal[10, 12, 14, 16] = 12
    transfer_syntax: Literal["explicit_le", "implicit_le", "rle_lossless"] = "explicit_le"
    rescale_slope: float = Field(1.0, gt=0)
    rescale_intercept: float = 0.0
    window_width_fraction: float = Field(1.0, gt=0, le=2.0)
    pixel_spacing_tag: Literal["PixelSpacing", "ImagerPixelSpacing", "both"] = "PixelSpacing"
    field_of_view_mm: float = Field(400.0, gt=50, le=600)
    # intensity transfer curve: I = sigmoid(contrast * ((A - 0.5) * gamma-curve)) + exposure
    gamma: float = Field(1.0, gt=0.2, le=5.0)
    contrast: float = Field(5.0, gt=0.5, le=20.0)
    exposure: float = Field(0.0, ge=-0.3, le=0.3)
    noise: float = Field(0.02, ge=0, le=0.3)
    blur: float = Field(0.002, ge=0, le=0.02)  # gaussian sigma as a fraction of the image size
    edge_enhance: float = Field(0.0, ge=0, le=3.0)  # unsharp-mask amount (some vendors' default processing)
    collimation: tuple[float, float] = (0.0, 0.04)  # border width range, fraction of the image size
    mark_text: str = Field("R", min_length=1, max_length=12)
    mark_corner: Corner = "top_left"
    mark_box: bool = False
    stamp_text: str = Field("PORTABLE", min_length=1, max_length=24)
    stamp_corner: Corner = "top_right"

    @model_validator(mode="after")
    def _collimation_range(self) -> SiteStyle:
        lo, hi = self.collimation
        if not 0 <= lo <= hi <= 0.2:
            raise ValueError(f"collimation must be [low, high] with 0 <= low <= high <= 0.2, got {[lo, hi]}")
        return self


class SiteConfig(StrictModel):
    name: str
    institution: str = Field(min_length=1)
    role: Literal["train", "ood_val", "test"]
    n: int = Field(ge=0, le=1_000_000)
    prevalence: float = Field(0.5, ge=0, le=1)
    position_label_agreement: float = Field(0.5, ge=0, le=1)  # P(AP supine | COVID) = P(PA erect | not COVID)
    children_among_negatives: float = Field(0.0, ge=0, le=1)
    device_probability: float = Field(0.6, ge=0, le=1)  # ICU devices, given an adult in AP supine
    stamp_probability: float = Field(0.5, ge=0, le=1)  # burned-in text stamp, given AP supine
    style: SiteStyle = SiteStyle()

    @model_validator(mode="after")
    def _name_format(self) -> SiteConfig:
        if not SITE_NAME.match(self.name):
            raise ValueError(f"site name must match {SITE_NAME.pattern} (used in paths), got {self.name!r}")
        return self


class DiseaseConfig(StrictModel):
    """COVID-19 opacities and their noise: together these cap what the lungs alone can predict."""

    opacity_if_positive: float = Field(0.88, ge=0, le=1)  # the rest of the positives show nothing
    lookalike_if_negative: float = Field(0.12, ge=0, le=1)  # negatives with an opacity that looks alike
    bilateral: float = Field(0.85, ge=0, le=1)
    density: tuple[float, float] = (0.22, 0.38)  # added attenuation at a blob's centre (lung air is ~0.45)
    extent: tuple[float, float] = (0.10, 0.20)  # blob radius as a fraction of the lung-pair box
    blobs_per_lung: tuple[int, int] = (2, 4)


class CohortConfig(StrictModel):
    name: str = "cohort"
    seed: int = Field(0, ge=0, lt=2**32)
    size: int = Field(256, ge=32, le=2048)
    counterfactual: Literal["position"] | None = None
    sites: list[SiteConfig] = Field(min_length=1)
    disease: DiseaseConfig = DiseaseConfig()

    @model_validator(mode="after")
    def _sites_consistent(self) -> CohortConfig:
        names = [s.name for s in self.sites]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"site names must be unique, got {dupes} more than once")
        train = [s.name for s in self.sites if s.role == "train"]
        if len(train) < 2:
            raise ValueError(f"at least two sites must have role 'train', got {train}")
        return self

    def site(self, name: str) -> SiteConfig:
        for s in self.sites:
            if s.name == name:
                return s
        raise ConfigError(f"synth: site must be one of {[s.name for s in self.sites]}, got {name!r}.")


def load_cohort_config(
    config: str | Path | CohortConfig | dict[str, Any],
    *,
    n_per_site: int | None = None,
    size: int | None = None,
    seed: int | None = None,
    counterfactual: str | None = None,
) -> CohortConfig:
    """Load and validate a cohort config; given options win over the file (``n_per_site`` sets every site's n)."""
    if isinstance(config, CohortConfig):
        data, source = config.model_dump(mode="python"), "<CohortConfig>"
    elif isinstance(config, dict):
        data, source = dict(config), "<dict>"
    else:
        data, source = read_yaml(config), str(config)
    if n_per_site is not None:
        if not isinstance(data.get("sites"), list):
            raise ConfigError(f"synth: sites must be a list in {source}, got {data.get('sites')!r}.")
        data["sites"] = [{**dict(s), "n": n_per_site} if isinstance(s, dict) else s for s in data["sites"]]
    for key, value in (("size", size), ("seed", seed), ("counterfactual", counterfactual)):
        if value is not None:
            data[key] = value
    return validate_config(CohortConfig, data, source=source)
