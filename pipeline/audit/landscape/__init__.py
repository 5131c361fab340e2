"""The audit's ``landscape`` part: does each model see the same loss landscape at every hospital?

Fishr's argument (Rame et al. 2022, sections 3-4) is that matching per-domain gradient variances matches the
domains' Fisher information, hence (approximately) their Hessians, so risks R_e, gradients G_e and Hessians H_e
agree across domains around the solution. This part measures, per model and site: R_e, accuracy, the head's
per-sample gradients (BackPACK, as Fishr) with their mean G_e and variance V_e, the head's exact Hessian diagonal,
the whole network's Hessian trace (Hutchinson), corr(V_e, diag H_e), and distances between sites.
``landscape_audit(...)`` returns the typed block (schema.LandscapeAudit) stored as audit.json["landscape"].
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.artefacts.landscape import LandscapeAudit, ModelLandscape

if TYPE_CHECKING:
    from pipeline.audit.config import LandscapeConfig


def not_run(reason: str) -> LandscapeAudit:
    return LandscapeAudit(measured=False, reason=reason)


def landscape_settings(cfg: LandscapeConfig, models: dict[str, ModelLandscape]) -> LandscapeAudit:
    """The audit.json block for the measured ``models`` (name -> ModelLandscape)."""
    return LandscapeAudit(measured=True, images_per_site=cfg.images_per_site, trace_images_per_site=cfg.trace_images,
                          trace_probes=cfg.trace_probes, bootstrap=cfg.bootstrap, training_split=cfg.training_split,
                          min_images=cfg.min_images, models=models)


__all__ = ["LandscapeAudit", "ModelLandscape", "landscape_settings", "not_run"]
