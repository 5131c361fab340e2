"""Ingest's ``summary.json``: what was kept and rejected, where every CSV row went, and which acquisition factors
predict the label (the typed model of the file; docs/ingest.md describes the fields for users).

Built by :func:`pipeline.ingest.summary.build_summary`, written by :func:`pipeline.ingest.assemble.ingest_into`, read
by the ingest console account, :func:`pipeline.protocol.shortcuts.shortcut_attributes` and the report's cohort
page. The measures under ``confounding.factors`` are defined in :mod:`pipeline.ingest.confounding`. Counts are
images (rows of ``manifest.parquet``) unless the name says rows of a CSV; a number that could not be measured is
None with the reason under the nearest ``not_measured``.

Some keys are written only in some cases (``sources`` only with several sources, a site's age quantiles only when
some age is known, ...): those fields are None in the model and absent from the file (``Block.OMIT_WHEN_NONE``).
A factor's ``unknown_level`` is the one key that is either absent (the factor does not warn) or written, possibly as
``null`` (it warns and has no 'unknown' level beside known ones): absent exactly when the builder did not set it
(``Block.OMIT_WHEN_UNSET``).
"""

from __future__ import annotations

from typing import ClassVar

from pipeline.artefacts.base import Artefact, Block


class Examples(Block):
    """A count with the first few examples (file names or CSV file-column values, scrubbed of patient names)."""

    n: int
    examples: list[str]


class GroupsImages(Block):
    """Groups of identical pixels (``pixel_sha256``) and the images in them."""

    groups: int
    images: int


class AgeStats(Block):
    """One site's age in years: ``n`` images, ``n_unknown`` without an age; mean and quantiles over the known ages
    (absent when none is known); ``age_group`` -> images."""

    OMIT_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"mean", "min", "q25", "median", "q75", "max"})

    n: int
    n_unknown: int
    mean: float | None = None
    min: float | None = None
    q25: float | None = None
    median: float | None = None
    q75: float | None = None
    max: float | None = None
    age_group: dict[str, int]


class Prevalence(Block):
    """One domain: images, labelled images, share of positives among the labelled (None when none is labelled)."""

    n: int
    n_labelled: int
    prevalence: float | None


class LabelGivenValue(Block):
    """P(label = 1) among one site's images with one attribute value; None with a reason when none is labelled."""

    OMIT_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"not_measured"})

    n: int
    n_labelled: int
    p_label: float | None
    not_measured: dict[str, str] | None = None


class Level(Block):
    """One value of a factor over the labelled rows of a scope: rows, positives, their share."""

    n: int
    n_pos: int
    prevalence: float | None


class UnknownLevel(Block):
    """For a warning factor with an 'unknown' value beside known ones: the AUROC over the known values alone (None
    when one known value is left), whether missingness drives the warning, and collection or site -> unknown rows."""

    auroc_known_levels: float | None
    driven_by_unknown: bool
    unknown_origin: dict[str, int]


class Factor(Block):
    """The measures of one factor in one scope ('all' or 'site=<name>'), from
    :func:`pipeline.ingest.confounding.measure_factor`: ``n`` labelled rows, factor-alone AUROC with its Hanley &
    McNeil 95% interval, bias-corrected Cramer's V with its BC bootstrap interval and the chi-square p-value, the
    older majority-label accuracy / chance / lift. ``unknown_level`` is written for factors that warn only."""

    OMIT_WHEN_UNSET: ClassVar[frozenset[str]] = frozenset({"unknown_level"})

    factor: str
    scope: str
    n: int
    n_pos: int
    n_neg: int
    levels: dict[str, Level]
    auroc: float | None
    auroc_ci95: list[float] | None
    cramers_v: float | None
    cramers_v_ci95: list[float] | None
    chi2_p_value: float | None
    small_n: bool
    not_measured: dict[str, str]
    accuracy: float | None
    chance: float | None
    lift: float | None
    unknown_level: UnknownLevel | None = None


class Confounding(Block):
    """How strongly each acquisition factor alone predicts the label (:mod:`pipeline.ingest.summary`):
    ``p_label_given_attribute_per_site`` is attribute -> site -> value -> :class:`LabelGivenValue`;
    ``p_label_given_position_per_site`` repeats its ``position`` entry (older readers; written when position is a
    shortcut attribute); ``warnings`` are the sentences the console and the report print."""

    OMIT_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"p_label_given_position_per_site"})

    n_labelled: int
    n_unlabelled: int
    shortcut_attributes: list[str]
    label_prevalence_per_domain: dict[str, Prevalence]
    p_label_given_attribute_per_site: dict[str, dict[str, dict[str, LabelGivenValue]]]
    p_label_given_position_per_site: dict[str, dict[str, LabelGivenValue]] | None = None
    factors: list[Factor]
    warning_auroc: float
    warning_p_value: float
    warning_lift: float
    warnings: list[str]


class SourceAccount(Block):
    """One entry of ``sources:`` (several sources only): its folder, its CSV and how the CSV's rows met its files."""

    name: str
    path: str
    metadata: str | None
    n_files: int
    metadata_rows: int
    metadata_rows_matched: int
    metadata_rows_without_image: Examples
    metadata_duplicate_rows: int
    conflicting_metadata_rows: int


class PathField(Block):
    """A configured ``path_fields`` pattern: files whose relative path it matched, and examples of the others."""

    pattern: str
    matched: int
    unmatched: int
    unmatched_examples: list[str]


class NameResolved(Block):
    """A config name found in the data only by ignoring case, whitespace or Unicode form."""

    key: str
    given: str
    resolved: str


class PatientIdentifiers(Block):
    """File names that held their image's patient name or ID (written scrubbed, with ``token`` in their place)."""

    n: int
    token: str
    note: str


# a CSV/path value and a DICOM tag value: text for most fields, a number of years for age_years
FieldValue = str | int | float | None


class Disagreement(Block):
    """One image where the kept CSV/path value and the DICOM tag's value differ after harmonisation."""

    file: str
    kept: FieldValue
    kept_source: str
    other: FieldValue
    other_source: str


class HeldoutMove(Disagreement):
    """A site disagreement whose two values fall on different sides of the held-out line ('test', 'ood_val' or
    'training')."""

    kept_split: str
    tag_split: str


class HeldoutMoves(Block):
    n: int
    examples: list[HeldoutMove]


class FieldDisagreements(Block):
    """One field's disagreements (count and first examples); ``heldout_moves`` is written for the site field when
    some disagreement moved an image across the held-out line."""

    OMIT_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"heldout_moves"})

    n: int
    examples: list[Disagreement]
    heldout_moves: HeldoutMoves | None = None


class IngestSummary(Artefact):
    """``<ingest>/summary.json``. Field order is the file's key order."""

    FILENAME: ClassVar[str] = "summary.json"
    STAGE: ClassVar[str] = "ingest"
    SCHEMA_VERSION: ClassVar[int] = 1
    OMIT_WHEN_NONE: ClassVar[frozenset[str]] = frozenset({"sources"})

    schema_version: int = SCHEMA_VERSION
    n_images: int
    n_rejected: int  # files, rows of rejects.csv
    n_unlabelled: int  # kept images with label unknown
    shortcut_attributes: list[str]  # as the manifest spells them, in the config's order
    per_split: dict[str, int]
    per_site: dict[str, int]
    counts_site_position_label: dict[str, dict[str, dict[str, int]]]  # site -> position -> '0'/'1'/'unknown' -> n
    age_per_site: dict[str, AgeStats]
    rejects_by_reason: dict[str, int]
    decode_notes: dict[str, int]  # decoder note (before its parenthesis) -> images
    duplicates: GroupsImages
    confounding: Confounding
    source: str | list[str]  # the SOURCE folder, or every source's folder
    metadata: str | None | list[str | None]  # the metadata CSV (None: none), or every source's
    sources: list[SourceAccount] | None = None
    counterfactual_source: str | None
    n_counterfactual: int
    metadata_rows: int  # rows of every metadata CSV
    metadata_rows_matched: int
    metadata_rows_without_image: Examples
    metadata_duplicate_rows: int
    conflicting_metadata_rows: int  # files rejected because their CSV rows disagree
    path_fields: dict[str, PathField]  # '<source>:<field>' with several sources
    config_names_resolved: list[NameResolved]
    domain_columns: list[str]
    test_sites: list[str]
    ood_val_sites: list[str]
    cache_size: int  # pixels per side
    skipped_non_image_files: Examples
    merged_spellings: dict[str, dict[str, list[str]]]  # field -> kept spelling -> spellings merged into it
    merged_spelling_images: dict[str, dict[str, int]]  # field -> merged spelling -> images rewritten
    conflicting_duplicate_labels: GroupsImages
    patient_identifiers_in_file_names: PatientIdentifiers
    field_disagreements: dict[str, FieldDisagreements]  # field -> disagreements
