"""The audit's config (configs/audit/default.yaml): which attribution methods, how many images, their knobs."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipeline.config import StrictModel

Method = Literal["integrated_gradients", "saliency", "grad_cam", "occlusion"]
ALL_METHODS: tuple[str, ...] = ("integrated_gradients", "saliency", "grad_cam", "occlusion")


class LandscapeConfig(StrictModel):
    """The audit's ``landscape`` part (docs/audit.md): per model and site, risk, head gradients' mean and variance,
    head Hessian diagonal, network Hessian trace, and distances between sites."""

    enabled: bool = Field(False, description="measure the landscape (costs trace_images x trace_probes x "
                                             "forward+backward+forward-mode passes per site and model)")
    images_per_site: int = Field(64, ge=2, description="labelled images sampled per site (balanced over labels)")
    min_images: int = Field(8, ge=2, description="a site with fewer labelled images is not measured (null + reason)")
    training_split: Literal["train", "val"] = Field(
        "train", description="which rows stand for a training site: the ones it was trained on, or its validation")
    trace_images: int = Field(16, ge=0, description="images of the site sample used for the Hutchinson trace; 0: skip")
    trace_probes: int = Field(8, ge=1, description="Rademacher probes of the Hutchinson trace")
    bootstrap: int = Field(200, ge=0, description="resamples for the distances' 95% intervals; 0: no interval")


class AuditConfig(StrictModel):
    """Every knob of `cxr-fishr audit`; defaults sized for the demo (128 px, a few hundred test images, 2 cores)."""

    split: Literal["train", "val", "ood_val", "test"] = "test"
    methods: list[Method] = Field(default_factory=lambda: list(ALL_METHODS), min_length=1)
    target: Literal["predicted", "label", "positive"] = "predicted"
    max_images: int = Field(96, ge=1, description="attribution images per model (stratified site x position x label)")
    max_intervention_images: int = Field(2000, ge=1, description="images for interventions and region ablation")
    batch_size: int = Field(16, ge=1)
    ig_steps: int = Field(32, ge=2)
    internal_batch_size: int = Field(64, ge=1, description="IG: inputs x steps per forward/backward pass")
    occlusion_window: float = Field(0.25, gt=0, le=1, description="window side as a fraction of the image side")
    occlusion_stride: float = Field(0.125, gt=0, le=1, description="stride as a fraction of the image side")
    grad_cam_layer: str | None = Field(None, description="dotted module name; default: the backbone's last stage")
    smoothing_sigma: float = Field(1.0, ge=0, description="pointing game: Gaussian sigma in pixels before arg-max")
    probe_splits: list[Literal["train", "val", "ood_val", "test"]] = Field(
        default_factory=lambda: ["train", "val", "ood_val", "test"], min_length=1)
    probe_max_images: int = Field(600, ge=10)
    probe_folds: int = Field(5, ge=2)
    sanity_images: int = Field(16, ge=1)
    overlays_per_stratum: int = Field(1, ge=0, description="overlay PNGs per site x position x label per model")
    lung_estimate: Literal["none", "ellipses"] = "none"
    landscape: LandscapeConfig = Field(default_factory=LandscapeConfig)
    seed: int = 0
