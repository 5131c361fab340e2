"""The typed ``landscape`` block of audit.json (written by pipeline/audit/landscape, read by the report).

Strict JSON: a number that could not be measured is None, with the reason under the nearest ``not_measured``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import ConfigDict

from pipeline.artefacts.base import Block

LANDSCAPE_SCHEMA_VERSION = 1
# the distances between sites, in the order the report draws them
QUANTITIES: tuple[str, ...] = ("risk", "gradient_mean", "gradient_variance", "hessian_diagonal")
Role = Literal["training", "holdout", "ood_val", "test"]  # holdout: a train/val site the model left out


class _Strict(Block):
    # Block refuses unknown keys and non-finite floats (the builder writes None + reason); landscape blocks are
    # also immutable once measured
    model_config = ConfigDict(frozen=True)


class Estimate(_Strict):
    """A summary value with its 95% bootstrap interval over the sampled images (None + reason when unmeasured)."""

    value: float | None
    low: float | None = None
    high: float | None = None
    not_measured: str | None = None


class SiteLandscape(_Strict):
    """One site's landscape for one model, on ``n`` labelled images sampled from ``splits``."""

    site: str
    role: Role
    splits: list[str]
    # n: the labelled images MEASURED (a label-balanced sample of at most landscape.images_per_site; 0 when not
    # measured); n_labelled: every labelled image of the site in ``splits`` (the pool the sample is drawn from), so
    # n < n_labelled whenever the pool exceeds images_per_site
    n: int
    n_labelled: int
    n_pos: int | None = None        # positives / negatives among the n measured images
    n_neg: int | None = None
    risk: float | None = None       # mean cross-entropy (nats)
    # accuracy on the same n images at the checkpoint's ``threshold`` (P(label = 1) >= threshold, the rule of
    # evaluate and the audit, pipeline/decision_threshold.py): one accuracy per checkpoint in every stage
    threshold: float | None = None
    accuracy: float | None = None
    majority_accuracy: float | None = None   # always predicting the majority label of the n images
    constant_predictor: bool | None = None   # every thresholded prediction is one class
    gradient_mean_norm: float | None = None      # ||G_e||, head gradients
    gradient_variance_norm: float | None = None  # ||V_e||
    hessian_diagonal_norm: float | None = None   # ||H_e|| (head diagonal)
    fisher_hessian_correlation: float | None = None  # Pearson over head parameters of V_e vs diag(H_e)
    fisher_hessian_correlation_low: float | None = None   # its 95% bootstrap interval over the site's images
    fisher_hessian_correlation_high: float | None = None
    # the baseline that makes the correlation informative: for a linear head V_e and diag(H_e) both scale with the
    # squared feature magnitudes, so the correlation is near 1 for any weights; the same correlation with the
    # labels permuted within the site (mean and 2.5-97.5 percentiles over permutations)
    shuffled_label_correlation: Estimate | None = None
    hessian_trace: float | None = None           # whole network, Hutchinson (mean loss)
    hessian_trace_se: float | None = None
    trace_images: int = 0
    trace_probes: int = 0
    not_measured: dict[str, str] = {}


class DistanceMatrix(_Strict):
    """``values[i][j]``: the distance between ``sites[i]`` and ``sites[j]`` (None where a site is unmeasured)."""

    sites: list[str]
    values: list[list[float | None]]
    normalised_by: str


class DistanceSummary(_Strict):
    """Mean pairwise distance among training sites, and from the training sites to each held-out site."""

    within_training: Estimate
    to_new: Estimate                  # training site x held-out site pairs, every held-out site
    per_new_site: dict[str, Estimate]


class ModelLandscape(_Strict):
    sites: list[SiteLandscape]
    distances: dict[str, DistanceMatrix]   # keys: QUANTITIES
    summaries: dict[str, DistanceSummary]  # keys: QUANTITIES
    n_head_parameters: int
    n_parameters: int
    seconds: float
    # ||X_a - X_b|| / mean_e ||X_e|| can never exceed the number of measured sites: a distance near it says one
    # site's vector dominates the mean norm, not how far apart the sites are (statistics.distance_ceiling)
    distance_ceiling: float | None = None
    not_measured: dict[str, str] = {}


class LandscapeAudit(_Strict):
    """audit.json["landscape"]: measured (with its settings and one block per model) or not, with the reason."""

    schema_version: Literal[1] = LANDSCAPE_SCHEMA_VERSION
    measured: bool
    reason: str | None = None
    images_per_site: int | None = None
    trace_images_per_site: int | None = None
    trace_probes: int | None = None
    bootstrap: int | None = None
    training_split: str | None = None
    min_images: int | None = None
    models: dict[str, ModelLandscape] = {}
