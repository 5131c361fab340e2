"""Typed ingest config (``configs/ingest/*.yaml``) and the CSV column mapping (``data_manifests/sources/*.yaml``).

Relative paths inside a config (``metadata_mapping``) are resolved against the config file's folder, then the
working directory, then the repository root; ``counterfactual_source`` is resolved against SOURCE.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Discriminator, Field, Tag, model_validator

from pipeline.config import StrictModel, load_config, read_yaml, validate_config
from pipeline.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parents[2]

# Ordered (first match wins) keyword -> position rules over the free-text DICOM fields and CSV columns.
# SEMI-ERECT comes first because it contains ERECT; "portable" is only weak evidence, so it comes last.
DEFAULT_POSITION_RULES: tuple[tuple[str, str], ...] = (
    ("SEMI-ERECT", "unknown"), ("SEMI ERECT", "unknown"), ("SEMIERECT", "unknown"), ("SEMI-UPRIGHT", "unknown"),
    ("SUPINE", "supine"), ("RECUMBENT", "supine"), ("LYING", "supine"), ("DECUBITUS", "unknown"),
    ("ERECT", "erect"), ("UPRIGHT", "erect"), ("STANDING", "erect"), ("SITTING", "erect"),
    ("HORIZONTAL", "supine"), ("PORTABLE", "supine"), ("BEDSIDE", "supine"),
)
DEFAULT_VIEW_MAP: dict[str, str] = {
    "PA": "PA", "POSTEROANTERIOR": "PA", "POSTERO-ANTERIOR": "PA", "PA ERECT": "PA",
    "AP": "AP", "ANTEROPOSTERIOR": "AP", "ANTERO-POSTERIOR": "AP", "AP SUPINE": "AP", "AP ERECT": "AP",
    "AP SEMI ERECT": "AP", "AP SEMI-ERECT": "AP", "AP AXIAL": "AP", "AP LLD": "AP", "AP RLD": "AP",
    "AP_HORIZONTAL": "AP", "AP HORIZONTAL": "AP",
    "LL": "LL", "LATERAL": "LL", "L": "LL", "LAT": "LL", "LEFT LATERAL": "LL",
    "RL": "RL", "RIGHT LATERAL": "RL",
    "LLD": "LLD", "RLD": "RLD",
}
DEFAULT_SEX_MAP: dict[str, str] = {
    "M": "M", "MALE": "M", "F": "F", "FEMALE": "F", "O": "O", "OTHER": "O",
}


YAML_BOOLEAN_WORDS = {True: "'yes', 'true' or 'on'", False: "'no', 'false' or 'off'"}


def _as_text(value: Any) -> Any:
    """A label, site, view or modality written as a YAML number (``positive_values: [1]``) is its text ('1'); an
    unquoted yes/no/true/false/on/off, which YAML reads as a boolean, is an error asking to quote it (its spelling is
    lost, and a silent 'True' would match no CSV cell)."""
    if isinstance(value, bool):
        raise ValueError(f"YAML reads an unquoted {YAML_BOOLEAN_WORDS[value]} as the boolean {value}, not text: quote "
                         f"it, e.g. {YAML_BOOLEAN_WORDS[value].split(',')[0]} in quotes, spelled as the CSV or header "
                         "spells it ('YES', 'No')")
    if isinstance(value, (int, float)):
        return str(value)
    return value


# A text value of a config list or mapping key that YAML may have read as a number or a boolean
Text = Annotated[str, BeforeValidator(_as_text)]


class PositionRule(StrictModel):
    pattern: str
    position: Literal["erect", "supine", "unknown"]


class AgeFromBirth(StrictModel):
    """Age = year of ``date_column`` (YYYYMMDD or ISO) minus ``birth_column`` (a year), e.g. PadChest."""

    birth_column: str
    date_column: str


class MetadataMapping(StrictModel):
    """How a metadata CSV's columns become manifest fields. Every column is optional except the file column."""

    name: str = "metadata"
    file_column: str
    match: Literal["path", "basename", "stem"] = "path"
    file_suffix: str = ""  # appended to the file column (RSNA: patientId + '.dcm')
    label_column: str | None = None
    positive_values: list[Text] = Field(default_factory=list)
    negative_values: list[Text] | None = None  # None: every non-positive value (incl. missing) is negative
    label_separator: str | None = None  # multi-label cells ('Cardiomegaly|Effusion')
    label_strip_chars: str = ""  # stripped from each part ("[]' " for PadChest's "['normal', 'copd']")
    label_name: str | None = None
    site_column: str | None = None
    site_constant: Text | None = None
    view_columns: list[str] = Field(default_factory=list)  # first non-missing mapped value wins
    position_columns: list[str] = Field(default_factory=list)  # free text searched for position keywords
    age_column: str | None = None
    age_from_birth: AgeFromBirth | None = None
    age_missing_values: list[Text] = Field(default_factory=list)  # placeholders meaning 'unknown' (CheXpert: '0')
    sex_column: str | None = None
    patient_column: str | None = None
    patient_regex: str | None = None  # patient ID from the file column (group 1), e.g. CheXpert '(patient\\d+)'
    modality_column: str | None = None
    modality_map: dict[Text, Text] = Field(default_factory=dict)  # raw modality -> DICOM code ('X-ray' -> 'DX')
    encoding: str | None = None  # None: utf-8, falling back to latin-1
    separator: str = ","
    notes: str = ""


def _mapping_or_path(value: Any) -> str:
    return "path" if isinstance(value, str) else "mapping"


# ``metadata_mapping:`` inline (a mapping) or a YAML file's path: the discriminator validates one branch only, so an
# error inside the inline mapping is not followed by an unrelated "Input should be a valid string"
MappingOrPath = Annotated[
    Annotated[MetadataMapping, Tag("mapping")] | Annotated[str, Tag("path")], Discriminator(_mapping_or_path)
]


# Manifest fields a file-name pattern (``path_fields``) may set; each value goes through the same harmoniser as a
# CSV cell or DICOM tag of that field (site_map, view_map, position_rules, age parsing, sex_map, patient hashing).
PATH_FIELDS = ("site", "view", "position", "age", "sex", "patient", "modality")
SOURCE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_path_fields(value: dict[str, str]) -> dict[str, str]:
    """Each pattern compiles and has a named group called like its field (``{site: '^(?P<site>CR|DX)\\.'}``)."""
    for name, pattern in value.items():
        if name not in PATH_FIELDS:
            raise ValueError(f"path_fields keys must be among {list(PATH_FIELDS)}, got {name!r}")
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"path_fields.{name} must be a regular expression, got {pattern!r} ({exc})") from exc
        if name not in compiled.groupindex:
            raise ValueError(
                f"path_fields.{name} must have a named group (?P<{name}>...), got {pattern!r}; "
                f"e.g. '^(?P<{name}>[^/]+)/' takes the first folder"
            )
    return value


class SourceSpec(StrictModel):
    """One collection of a multi-source ingest (config ``sources:``): its folder, its CSV and how to read them.
    Unset keys fall back to the config's top level. Manifest paths are '<name>/<path under the folder>'."""

    name: str | None = None  # default: the folder's name; must be unique across sources
    path: str  # folder of images (relative: beside the config, then the working directory, then the repo)
    metadata: str | None = None  # CSV (same resolution)
    metadata_mapping: MappingOrPath | None = None
    site_constant: Text | None = None
    site_tag: str | None = None
    path_fields: dict[str, str] | None = None

    @model_validator(mode="after")
    def _check(self) -> SourceSpec:
        if self.name is not None and not SOURCE_NAME_RE.match(self.name):
            raise ValueError(f"sources[].name must be letters, digits, '_', '-' or '.', got {self.name!r}")
        if self.path_fields:
            check_path_fields(self.path_fields)
        return self


class SplitConfig(StrictModel):
    test_sites: list[Text] = Field(default_factory=list)
    ood_val_sites: list[Text] = Field(default_factory=list)
    holdout: float = Field(0.2, ge=0.0, lt=1.0)
    seed: int = 0


class CacheConfig(StrictModel):
    size: int = Field(128, ge=8, le=4096)
    aspect: Literal["pad", "stretch", "crop"] = "pad"  # pad to square / stretch / centre-crop to square
    crop_fraction: float = Field(1.0, gt=0.0, le=1.0)  # centre crop of this fraction of each side, before aspect


class IngestConfig(StrictModel):
    """Everything ingest needs besides SOURCE and --out (see docs/ingest.md)."""

    name: str = "dicom_folder"
    metadata_mapping: MappingOrPath | None = None
    site_tag: str = "InstitutionName"
    site_constant: Text | None = None  # used when neither the CSV nor the DICOM tag names the site
    site_map: dict[Text, Text] = Field(default_factory=dict)  # raw site (case-insensitive) -> short name
    view_map: dict[Text, Text] = Field(default_factory=lambda: dict(DEFAULT_VIEW_MAP))
    sex_map: dict[Text, Text] = Field(default_factory=lambda: dict(DEFAULT_SEX_MAP))
    position_rules: list[PositionRule] = Field(
        default_factory=lambda: [PositionRule(pattern=p, position=q) for p, q in DEFAULT_POSITION_RULES]
    )
    position_tags: list[str] = Field(
        default_factory=lambda: ["SeriesDescription", "StudyDescription", "ProtocolName", "ImageComments",
                                 "ViewPosition", "PatientPosition"]
    )
    pa_is_erect: bool = True  # a PA chest film needs a standing (or sitting) patient
    child_max_years: float = Field(18.0, gt=0)
    # An explicit opt-in that invents a label for images without one; no shipped config uses it. None (default):
    # such images are kept with label unknown (pd.NA), counted as n_unlabelled.
    label_default: Literal[0, 1] | None = None
    label_name: str = "finding"
    modalities: list[Text] | None = Field(default_factory=lambda: ["CR", "DX", "DR", "RG", "OT", "PX"])
    domain_columns: list[str] = Field(default_factory=lambda: ["site"])
    # manifest columns whose association with the label is measured (summary.json confounding; evaluate and audit
    # read summary.json["shortcut_attributes"] to know which shortcuts to test)
    shortcut_attributes: list[str] = Field(default_factory=lambda: ["position", "view"])
    path_fields: dict[str, str] = Field(default_factory=dict)  # field -> regex with a named group, on the path
    sources: list[SourceSpec] = Field(default_factory=list)  # several collections in one ingest (SOURCE omitted)
    splits: SplitConfig = SplitConfig()
    cache: CacheConfig = CacheConfig()
    counterfactual_source: str | None = None
    patient_salt: str | None = None  # None: generated once, kept as salt.txt beside the manifest
    workers: int | None = Field(None, ge=1)
    confounding_warning_lift: float = Field(0.15, gt=0, le=1)  # majority-label accuracy lift (kept for reference)
    confounding_warning_auroc: float = Field(0.6, gt=0.5, le=1)  # factor-alone AUROC that triggers a warning
    min_group_size: int = Field(20, ge=1)

    @model_validator(mode="after")
    def _check(self) -> IngestConfig:
        overlap = set(self.splits.test_sites) & set(self.splits.ood_val_sites)
        if overlap:
            raise ValueError(f"sites {sorted(overlap)} cannot be both test and ood_val sites")
        if not self.domain_columns:
            raise ValueError("domain_columns must name at least one column, e.g. [site]")
        check_path_fields(self.path_fields)
        names = [s.name for s in self.sources if s.name is not None]
        if len(names) != len(set(names)):
            raise ValueError(f"sources[].name must be unique, got {names}")
        return self


def resolve_path(value: str, base: Path | None) -> Path:
    """A relative path from a config: beside the config, else from the working directory, else the repo root."""
    path = Path(value).expanduser()
    if path.is_absolute():
        return path
    for root in (base, Path.cwd(), REPO_ROOT):
        if root is not None and (root / path).exists():
            return root / path
    return (base or Path.cwd()) / path


def load_mapping(value: MetadataMapping | str, base: Path | None) -> MetadataMapping:
    if isinstance(value, MetadataMapping):
        return value
    path = resolve_path(value, base)
    if not path.is_file():
        raise ConfigError(
            f"ingest: metadata_mapping must be a YAML file, got {value!r} (looked in {path}). "
            "Use a file from data_manifests/sources/ or write the mapping inline."
        )
    return validate_config(MetadataMapping, read_yaml(path), source=str(path))


def resolve_spec(spec: SourceSpec, base: Path | None) -> SourceSpec:
    """Paths of a ``sources:`` entry made absolute (beside the config, then the working directory, then the repo)
    and its mapping file loaded."""
    update: dict = {"path": str(resolve_path(spec.path, base).resolve())}
    if spec.metadata is not None:
        update["metadata"] = str(resolve_path(spec.metadata, base).resolve())
    if spec.metadata_mapping is not None:
        update["metadata_mapping"] = load_mapping(spec.metadata_mapping, base)
    return spec.model_copy(update=update)


def load_ingest_config(path: str | Path | None, *, size: int | None = None) -> IngestConfig:
    """The config at ``path`` (None: all defaults), with ``--size`` applied and the metadata mapping loaded."""
    if path is None:
        config = IngestConfig()
        base = None
    else:
        config = load_config(IngestConfig, path)
        base = Path(path).resolve().parent
        if "name" not in config.model_fields_set:  # 'dicom_folder' would misname a PNG or `sources:` config
            config = config.model_copy(update={"name": Path(path).stem})
    if config.metadata_mapping is not None and not isinstance(config.metadata_mapping, MetadataMapping):
        config = config.model_copy(update={"metadata_mapping": load_mapping(config.metadata_mapping, base)})
    if config.sources:
        config = config.model_copy(update={"sources": [resolve_spec(s, base) for s in config.sources]})
    return with_size(config, size)


def with_size(config: IngestConfig, size: int | None) -> IngestConfig:
    """``config`` with the cache resolution of ``--size`` (None: unchanged)."""
    if size is None:
        return config
    if not 8 <= size <= 4096:
        raise ConfigError(f"ingest: --size must be between 8 and 4096 pixels, got {size!r}. Use e.g. --size 128.")
    return config.model_copy(update={"cache": config.cache.model_copy(update={"size": size})})
