"""``AUDIT/audit.json``: does each model look at the lungs or at shortcuts (written by pipeline/audit).

Fractions and accuracies in [0, 1]; a number that could not be measured is None with its reason under the nearest
``not_measured``. The ``landscape`` block is pipeline/artefacts/landscape.py's :class:`LandscapeAudit`
(``measured: false`` with the reason when the audit config leaves it off).
"""

from __future__ import annotations

from typing import ClassVar

from pipeline.artefacts.base import Artefact, Block
from pipeline.artefacts.landscape import LandscapeAudit
from pipeline.artefacts.metrics import ThresholdSet
from pipeline.artefacts.selection import SelectionTruth
from pipeline.audit.config import AuditConfig


class Localisation(Block):
    """Attribution mass on the lungs and on shortcut regions, mean over the group's images
    (pipeline/audit/localisation.py summarise); ``n_valid``: images whose numbers are finite."""

    n: int
    n_valid: int
    lung_mass_fraction: float | None
    shortcut_mass_fraction: float | None
    lung_focus_ratio: float | None
    pointing_game: float | None
    # shortcut kind -> mass fraction (None: no shortcut mask); kinds are pipeline/regions.py SHORTCUT_KINDS
    shortcut_mass_fraction_per_kind: dict[str, float | None] | None
    not_measured: dict[str, str]


class MethodAttribution(Block):
    """One attribution method's localisation, overall and per site / position / label, and its sanity check."""

    OMIT_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"not_measured"})

    overall: Localisation
    per_site: dict[str, Localisation]
    per_position: dict[str, Localisation]
    per_label: dict[str, Localisation]  # "0" / "1" / "unknown"
    # rank correlation between the model's and a randomised model's maps (low: the maps depend on the weights)
    randomisation_rank_correlation: float | None
    not_measured: dict[str, str] | None = None
    seconds_per_image: float


class Interventions(Block):
    """Accuracy on the images as they are, with only the lungs, with the lungs removed (each with its majority
    baseline and constant flag), and the counterfactual flip rate (pipeline/audit/interventions.py).

    Each number's n: ``accuracy`` on ``n_labelled`` images, the lung variants on ``n_labelled_lung_masks`` (labelled
    and with a lung mask), the flip rate on ``n_counterfactual``; ``n``: every image of the group, labelled or not."""

    n: int
    n_labelled: int
    n_lung_masks: int
    n_labelled_lung_masks: int
    not_measured: dict[str, str]
    accuracy: float | None
    majority_accuracy: float | None
    constant_predictor: bool | None
    lung_only_accuracy: float | None
    lung_only_majority_accuracy: float | None
    lung_only_constant_predictor: bool | None
    lungs_removed_accuracy: float | None
    lungs_removed_majority_accuracy: float | None
    lungs_removed_constant_predictor: bool | None
    counterfactual_flip_rate: float | None
    n_counterfactual: int


class InterventionScopes(Block):
    overall: Interventions
    per_site: dict[str, Interventions]


class RegionShares(Block):
    """Per region, its share of the logit drop when it is ablated (interventions.region_ablation_share)."""

    rest: float | None
    lungs: float | None
    scapula_shoulder: float | None
    devices: float | None
    text_stamp: float | None
    site_mark: float | None
    collimation: float | None
    outside_lungs: float | None
    n: int
    n_valid: int
    n_measured: dict[str, int]  # region -> images it was measured on
    not_measured: dict[str, str]


class RegionAblation(Block):
    overall: RegionShares
    per_site: dict[str, RegionShares]


class LabelledCounts(Block):
    attribution: int
    attribution_total: int
    interventions: int
    interventions_total: int


class AuditModel(Block):
    """One audited checkpoint (pipeline/audit/model_audit.py audit_network plus runs.ModelEntry.describe)."""

    OMIT_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"not_measured"})

    name: str
    run: str
    model_dir: str
    checkpoint: str
    algorithm: str
    seed: int | None
    step: int | None
    weights_step: int | None
    selection_rule: str
    selection: SelectionTruth
    upper_bound: bool
    split: str
    threshold: ThresholdSet
    methods: dict[str, MethodAttribution]  # method -> its numbers (the config's methods)
    interventions: InterventionScopes
    region_ablation_share: RegionAblation | None
    region_ablation_abs_share: RegionAblation | None
    not_measured: dict[str, str] | None = None
    # probe target (site and each shortcut attribute) -> balanced accuracy of a linear probe on frozen features
    probe_balanced_accuracy: dict[str, float | None]
    probe_chance: dict[str, float | None]
    probe_notes: list[str]
    probe_n_per_class: dict[str, dict[str, int]]
    probe_not_measured: dict[str, str]
    probe_n_images: int
    n_labelled: LabelledCounts


class LungMaskCounts(Block):
    provided: int
    estimated: int
    absent: int


class SplitCounts(Block):
    total: int
    labelled: int
    unlabelled: int


class ImageCounts(Block):
    attribution: int
    interventions: int
    probe: int
    sanity: int


class Skipped(Block):
    metric: str
    reason: str


class Overlay(Block):
    model: str
    image_id: str
    site: str
    position: str
    label: int | None
    prediction: int
    methods: list[str]
    file: str  # relative to the audit folder


class AuditFile(Artefact):
    """audit's audit.json (docs/audit.md)."""

    FILENAME: ClassVar[str] = "audit.json"
    STAGE: ClassVar[str] = "audit"
    SCHEMA_VERSION: ClassVar[int] = 1

    schema_version: int = 1
    stage: str = "audit"
    split: str
    ingest_dir: str  # absolute
    ingest_hash: str | None
    lung_masks: LungMaskCounts
    lung_source: str  # "manifest", "estimated" or "none"
    n_split: SplitCounts
    shortcut_attributes: list[str]
    shortcut_notes: list[str]
    shortcut_masks: bool
    counterfactuals: bool
    shortcut_kinds: list[str]
    n_images: ImageCounts
    skipped: list[Skipped]
    warnings: list[str]
    n_warnings: int
    config: AuditConfig
    models: dict[str, AuditModel]
    overlays: list[Overlay]
    landscape: LandscapeAudit
