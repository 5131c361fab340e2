"""``EVALUATE/metrics.json``: evaluate's scores of every model on one split (written by pipeline/evaluate).

Every block follows pipeline/evaluate/scoring.py: a number that could not be measured is None, with its reason under
the nearest ``not_measured`` (key -> reason).
"""

from __future__ import annotations

from typing import ClassVar

from pipeline.artefacts.base import Artefact, Block
from pipeline.artefacts.selection import ConstantAtSelection, SelectionTruth


class ShortcutScores(Block):
    """Conflict/aligned accuracy of one shortcut attribute on one group (scoring.shortcut_block)."""

    OMIT_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"positive_associated", "negative_associated"})

    conflict_accuracy: float | None
    aligned_accuracy: float | None
    n_conflict: int
    n_aligned: int
    n_unknown: int
    # the attribute's values that go with label 1 / label 0 in training (both empty: no estimable direction)
    positive_associated: list[str] | None = None
    negative_associated: list[str] | None = None
    not_measured: dict[str, str]


class GroupScores(Block):
    """Every number of one model on one group of rows (overall, a site, a site|position): GroupScorer.__call__.
    Accuracies in [0, 1] at ``threshold`` (P(label = 1) >= threshold predicts positive); ``auroc_ci``: the 95%
    bootstrap interval [low, high]; ``confusion_matrix``: [[tn, fp], [fn, tp]]."""

    n: int
    n_pos: int
    n_neg: int
    accuracy: float | None
    majority_accuracy: float | None
    constant_predictor: bool
    threshold: float
    balanced_accuracy: float | None
    auroc: float | None
    auroc_ci: list[float | None]
    ece: float | None
    confusion_matrix: list[list[int]]
    conflict_attribute: str | None  # the headline shortcut attribute of the conflict/aligned numbers below
    conflict_accuracy: float | None
    aligned_accuracy: float | None
    n_conflict: int | None
    n_aligned: int | None
    n_unknown: int | None
    shortcuts: dict[str, ShortcutScores]  # attribute -> its conflict/aligned numbers (open-ended: the manifest's)
    selection_rule: str
    split: str
    notes: list[str]
    not_measured: dict[str, str]


class MeanSite(Block):
    """Unweighted mean over sites of each summary key (scoring.summarise_sites; NaN-skipping)."""

    accuracy: float | None
    balanced_accuracy: float | None
    auroc: float | None
    ece: float | None
    conflict_accuracy: float | None
    aligned_accuracy: float | None
    majority_accuracy: float | None
    not_measured: dict[str, str]


class WorstValue(Block):
    """The worst site for one metric and its value (site None when no site measured it)."""

    OMIT_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"not_measured"})

    site: str | None
    value: float | None
    not_measured: str | None = None


class WorstSite(Block):
    accuracy: WorstValue
    balanced_accuracy: WorstValue
    auroc: WorstValue
    conflict_accuracy: WorstValue


class RunStats(Block):
    """One run's spread over its last evaluations (evaluate/history.py); std None with a reason for n = 1."""

    OMIT_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"not_measured"})

    mean: float
    std: float | None
    min: float
    max: float
    n: int
    not_measured: dict[str, str] | None = None


class HistorySummary(Block):
    """The run's last ``last_k`` evaluation lines of history.jsonl, per HISTORY_KEYS (None: never logged)."""

    last_k: int
    n_evaluations: int
    steps: list[int | None]
    test_acc: RunStats | None
    test_conflict_acc: RunStats | None
    ood_val_acc: RunStats | None
    val_acc: RunStats | None


class ThresholdSet(Block):
    """The checkpoint's decision threshold and the labelled rows it was chosen on (thresholds.Threshold)."""

    value: float
    source: str
    n: int
    n_pos: int
    n_neg: int
    warning: str | None


class EntrySelection(SelectionTruth):
    """The train stage's selection truth for this checkpoint (runs.selection_truth) plus evaluate's
    ``constant_at_selection`` fact (evaluate/selection_facts.py; None when train's selection was not constant)."""

    constant_at_selection: ConstantAtSelection | None


class ModelEntry(Block):
    """One scored checkpoint: what it is (runs.ModelEntry.describe), its threshold and its scores."""

    name: str
    run: str
    model_dir: str
    checkpoint: str
    algorithm: str
    seed: int | None
    step: int | None  # the selected step (None when the rule selected nothing)
    weights_step: int | None  # the step of the weights actually scored
    selection_rule: str
    selection: EntrySelection
    upper_bound: bool
    split: str
    threshold: float
    threshold_source: str
    threshold_set: ThresholdSet
    n_unlabelled_skipped: int
    protocol: str
    constant_predictor: bool
    constant_on_split: bool
    overall: GroupScores
    per_site: dict[str, GroupScores]  # site -> scores
    per_group: dict[str, GroupScores]  # "site|position" -> scores
    mean_site: MeanSite
    worst_site: WorstSite
    history: HistorySummary | None
    val_acc_at_step: float | None
    not_measured: dict[str, str]


class MeanSpreadBlock(Block):
    """Mean and spread over runs (seeds) as metrics.json writes it (artefacts/seeds.SeedSpread.block)."""

    OMIT_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"not_measured"})

    mean: float
    std: float | None
    n: int
    not_measured: dict[str, str] | None = None


class Aggregate(Block):
    """One ``algorithm|selection_rule`` group of models: mean and spread over its runs (evaluate/history.py)."""

    algorithm: str
    selection_rule: str
    upper_bound: bool
    n_runs: int
    seeds: list[int | None]
    models: list[str]
    mean_site_accuracy: MeanSpreadBlock | None
    mean_site_conflict_accuracy: MeanSpreadBlock | None
    mean_site_auroc: MeanSpreadBlock | None
    history_test_acc: MeanSpreadBlock | None
    not_measured: dict[str, str]


class MetadataBaseline(Block):
    """The metadata-only logistic regression scored like a model (evaluate._baseline); not fitted: ``note`` says
    why, the scores are None/empty and ``not_measured`` names them."""

    OMIT_WHEN_NONE: ClassVar[frozenset[str]] = frozenset(
        {"note", "threshold", "threshold_source", "not_measured"})

    features: list[str]
    fitted_on: str
    n_train: int
    note: str | None = None
    threshold: float | None = None
    threshold_source: str | None = None
    overall: GroupScores | None
    per_site: dict[str, GroupScores]
    per_group: dict[str, GroupScores]
    mean_site: MeanSite | None
    worst_site: WorstSite | None
    not_measured: dict[str, str] | None = None


class ShortcutDirectionBlock(Block):
    """One attribute's direction estimated on the training rows (pipeline/protocol/shortcuts.ShortcutDirection.describe)."""

    OMIT_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"not_measured"})

    positive_associated: list[str]
    negative_associated: list[str]
    train_prevalence: float | None
    n_train: int
    value_prevalence: dict[str, float | None]  # attribute value -> P(label = 1) among training rows with it
    not_measured: dict[str, str] | None = None


class MetricsFile(Artefact):
    """evaluate's metrics.json (docs/design/metrics.md)."""

    FILENAME: ClassVar[str] = "metrics.json"
    STAGE: ClassVar[str] = "evaluate"
    SCHEMA_VERSION: ClassVar[int] = 1

    schema_version: int = 1
    stage: str = "evaluate"
    split: str
    ingest_dir: str  # absolute
    ingest_hash: str | None  # the cohort's cache inputs hash (None: not recorded)
    sites: list[str]
    groups: list[str]
    shortcut_attribute: str | None
    conflict_attribute: str | None
    conflict_attribute_not_measured: str | None
    shortcut_attributes: list[str]
    shortcut_directions: dict[str, ShortcutDirectionBlock]  # attribute -> direction
    shortcut_notes: list[str]
    n_images: int
    n_unlabelled_skipped: int
    warnings: list[str]
    n_bootstrap: int
    bootstrap_seed: int
    ece_bins: int
    models: dict[str, ModelEntry]  # model name -> entry
    aggregates: dict[str, Aggregate]  # "algorithm|selection_rule" -> aggregate over seeds
    metadata_baseline: MetadataBaseline
    # site / "overall" / "mean_site" -> the baseline's AUROC, plus "not_measured"; open-ended keys (the sites), so
    # typed as a map of numbers with the reasons map beside them
    metadata_baseline_auroc: dict[str, float | None | dict[str, str]]
