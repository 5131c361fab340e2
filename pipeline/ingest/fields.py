"""One image's manifest fields from its metadata CSV row, its path and its DICOM tags, each with a ``*_source`` column.

Precedence (:data:`PRECEDENCE`, one rule for every field): a column the CSV mapping names wins (the hospital's export
is the curated record), then a configured ``path_fields`` pattern, then the DICOM tag, then a constant from the
config. A field configured in ``path_fields`` is decided there: its DICOM tag and constants are not read. PatientName
is never read; PatientID leaves only as a salted hash.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pipeline.ingest import harmonise as h
from pipeline.ingest.config import IngestConfig, MetadataMapping

Reading = tuple[Any, str]  # (harmonised value, where it came from: 'csv:<column>', 'path:<field>', 'dicom:<tag>', ...)

# Where each field may come from, highest precedence first; the first source with a known value wins.
PRECEDENCE: dict[str, tuple[str, ...]] = {
    "site": ("csv", "path", "mapping_constant", "dicom", "config_constant"),
    "view": ("csv", "path", "dicom"),  # the CSV's view columns in their order
    "age": ("csv", "path", "dicom"),  # csv: age_column, else age_from_birth
    "sex": ("csv", "path", "dicom"),
    "patient": ("csv", "csv_regex", "path", "dicom", "file"),
    "modality": ("csv", "path", "dicom"),
}
# read even when a configured path field decided (unknown there): without an ID, each image is its own patient
AFTER_PATH = frozenset({"file"})


@dataclass(frozen=True)
class FieldRule:
    """When a field's value counts as known, and its value when no source knows it."""

    known: Callable[[Any], bool]
    unknown: Any


FIELDS: dict[str, FieldRule] = {
    "site": FieldRule(known=lambda v: v is not None, unknown="unknown"),
    "view": FieldRule(known=lambda v: v != "unknown", unknown="unknown"),
    "age": FieldRule(known=lambda v: not math.isnan(v), unknown=math.nan),
    "sex": FieldRule(known=lambda v: v != "unknown", unknown="unknown"),
    "patient": FieldRule(known=lambda v: v is not None, unknown=None),
    "modality": FieldRule(known=lambda v: v != "unknown", unknown="unknown"),
}


@dataclass(frozen=True)
class _Image:
    """What one image offers: its CSV row (None without one), its DICOM tags, its ``path_fields`` values."""

    row: Mapping[str, Any] | None
    tags: dict[str, str]
    path: dict[str, tuple[str | None, str]]
    patient_id: str | None
    fallback_id: str


def patient_key(salt: str, patient_id: str) -> str:
    return hashlib.sha256(f"{salt}\x00{patient_id}".encode()).hexdigest()[:24]


class Harmoniser:
    """Derives manifest fields; lookups are memoised because public CSVs repeat the same few values."""

    def __init__(self, config: IngestConfig, salt: str) -> None:
        self.config = config
        self.mapping: MetadataMapping | None = (
            config.metadata_mapping if isinstance(config.metadata_mapping, MetadataMapping) else None
        )
        self._salt = salt
        self._path_patterns = {name: re.compile(pattern) for name, pattern in config.path_fields.items()}
        self.raw_sites: set[str] = set()
        self._view = lru_cache(maxsize=4096)(lambda raw, origin: h.map_value(raw, config.view_map, origin))
        self._sex = lru_cache(maxsize=4096)(lambda raw, origin: h.map_value(raw, config.sex_map, origin))
        self._age = lru_cache(maxsize=65536)(h.parse_age)
        self._site = lru_cache(maxsize=4096)(lambda raw, origin: h.map_site(raw, config.site_map, origin))
        self._position = lru_cache(maxsize=65536)(
            lambda texts, view: h.map_position(texts, config.position_rules, view, config.pa_is_erect)
        )
        self._label = lru_cache(maxsize=65536)(
            lambda raw, origin: h.map_label(raw, self.mapping, origin) if self.mapping else (None, "none")
        )
    def fields(
        self, row: Mapping[str, Any] | None, tags: Mapping[str, str] | None, patient_id: str | None, fallback_id: str,
        *, relative: str | None = None,
    ) -> dict[str, Any]:
        """The fields of one image, each beside its ``*_source``; ``label`` is None when unknown. ``relative``: the
        file's path under its source, read by ``path_fields``. Site, view, age, sex, patient and modality follow
        :data:`PRECEDENCE`; position reads every text at once, the label only the CSV (or ``label_default``)."""
        image = self._image(row, tags, patient_id, fallback_id, relative)
        out: dict[str, Any] = {}
        out["site"], out["site_source"] = self._resolve("site", image)
        out["view"], out["view_source"] = self._resolve("view", image)
        out["position"], out["position_source"] = self._position(self._position_texts(image), out["view"])
        out["age_years"], out["age_source"] = self._resolve("age", image)
        out["age_group"] = h.age_group(out["age_years"], self.config.child_max_years)
        out["sex"], out["sex_source"] = self._resolve("sex", image)
        out["label"], out["label_source"] = self._label_field(image.row)
        mapping = self.mapping
        out["label_name"] = (mapping.label_name if mapping and mapping.label_name else None) or self.config.label_name
        patient, source = self._resolve("patient", image)
        out["patient_key"], out["patient_key_source"] = patient_key(self._salt, patient), source
        out["modality"], out["modality_source"] = self._resolve("modality", image)
        return out

    def _image(self, row: Mapping[str, Any] | None, tags: Mapping[str, str] | None, patient_id: str | None,
               fallback_id: str, relative: str | None) -> _Image:
        path = self.path_values(relative or fallback_id)
        tags = dict(tags or {})
        for name, tag in (("site", self.config.site_tag), ("sex", "PatientSex"), ("age", "PatientAge"),
                          ("modality", "Modality")):
            if name in path:  # the configured pattern replaces the header's tag (position texts included)
                tags.pop(tag, None)
        row = row if (row is not None and self.mapping is not None) else None
        return _Image(row=row, tags=tags, path=path, patient_id=patient_id, fallback_id=fallback_id)

    def _resolve(self, name: str, image: _Image) -> Reading:
        """Field ``name`` of ``image``: the first known reading in :data:`PRECEDENCE` order. Unknown: the reading of
        the last source tried (view: the first, its own CSV column), else (unknown, 'none')."""
        field = FIELDS[name]
        tried: list[Reading] = []
        path_decides = False
        for source in PRECEDENCE[name]:
            if path_decides and source not in AFTER_PATH:
                continue
            for value, origin in READERS[name, source](self, image):
                if field.known(value):
                    return value, origin
                tried.append((value, origin))
            path_decides = source == "path" and name in image.path
        if not tried:
            return field.unknown, "none"
        value, origin = tried[0] if name == "view" else tried[-1]
        return (field.unknown if value is None else value), origin

    def _position_texts(self, image: _Image) -> tuple[tuple[object, str], ...]:
        """The free texts position keywords are searched in, in order: the CSV's position and view columns, then the
        path's position or else the DICOM ``position_tags``."""
        texts: list[tuple[object, str]] = []
        if image.row is not None:
            columns = [*self.mapping.position_columns, *self.mapping.view_columns]
            texts += [(image.row.get(column), f"csv:{column}") for column in columns]
        if "position" in image.path:
            texts.append(image.path["position"])
        else:
            texts += [(image.tags.get(tag), f"dicom:{tag}") for tag in self.config.position_tags if image.tags.get(tag)]
        return tuple(texts)

    def _label_field(self, row: Mapping[str, Any] | None) -> Reading:
        """The CSV's label column decides (a blank cell stays unknown); ``label_default`` only without one."""
        if row is not None and self.mapping.label_column:
            return self._label(row.get(self.mapping.label_column), f"csv:{self.mapping.label_column}")
        if self.config.label_default is not None:
            return self.config.label_default, "config:label_default"
        return None, "none"

    def tag_values(
        self, tags: Mapping[str, str] | None, patient_id: str | None, view: str
    ) -> dict[str, tuple[Any, str]]:
        """field -> (harmonised value, 'dicom:<tag>') that the DICOM header alone gives, for the fields it gives
        (compared with the CSV's or path's value, which win: :mod:`pipeline.ingest.disagreements`). The patient is
        its salted key; ``view`` is the kept view (position rules read it)."""
        tags, c, out = tags or {}, self.config, {}
        if tags.get(c.site_tag):
            site, _ = self._site(tags[c.site_tag], f"dicom:{c.site_tag}")
            if site is not None:
                out["site"] = (site, f"dicom:{c.site_tag}")
        for name, tag, lookup in (("view", "ViewPosition", self._view), ("sex", "PatientSex", self._sex)):
            value = lookup(h.clean(tags.get(tag)), f"dicom:{tag}")[0] if tags.get(tag) else "unknown"
            if value != "unknown":
                out[name] = (value, f"dicom:{tag}")
        texts = tuple((tags.get(tag), f"dicom:{tag}") for tag in c.position_tags if tags.get(tag))
        position, source = self._position(texts, view) if texts else ("unknown", "none")
        if position != "unknown" and source.startswith("dicom:"):
            out["position"] = (position, source.split("~")[0])
        years = self._age(tags.get("PatientAge"), "dicom:PatientAge")[0] if tags.get("PatientAge") else math.nan
        if not math.isnan(years):
            out["age_years"] = (years, "dicom:PatientAge")
        if h.clean(tags.get("Modality")):
            out["modality"] = (h.clean(tags["Modality"]).upper(), "dicom:Modality")
        if h.clean(patient_id):
            out["patient_key"] = (patient_key(self._salt, h.clean(patient_id)), "dicom:PatientID")
        return out

    def path_values(self, relative: str) -> dict[str, tuple[str | None, str]]:
        """field -> (raw value, origin) from ``path_fields``; (None, 'path:<field>:unmatched') when not matched."""
        out = {}
        for name, pattern in self._path_patterns.items():
            found = pattern.search(relative)
            value = found.group(name) if found else None
            out[name] = (value, f"path:{name}") if value else (None, f"path:{name}:unmatched")
        return out

    def _site_of(self, raw: object, origin: str) -> tuple[str | None, str]:
        text = h.clean(raw)
        if text is not None:
            self.raw_sites.add(text)  # every site name the data gave: site_map keys must match one of them
        return self._site(raw, origin)

    def label_of(self, row: Mapping[str, Any]) -> tuple[int | None, str]:
        """(label, source) a CSV row maps to, before any decoding: source ends in ':missing' for a blank cell (kept
        unlabelled) and ':unmapped' for a value that is neither positive nor negative (rejected)."""
        if self.mapping is None or not self.mapping.label_column:
            return None, "none"
        return self._label(row.get(self.mapping.label_column), f"csv:{self.mapping.label_column}")

    # The readers of PRECEDENCE: each returns the readings one source offers for one field ([] when it has none).

    def _site_from_csv(self, image: _Image) -> list[Reading]:
        column = self.mapping.site_column if image.row is not None else None
        return [self._site_of(image.row.get(column), f"csv:{column}")] if column else []

    def _site_from_path(self, image: _Image) -> list[Reading]:
        if "site" not in image.path:
            return []
        raw, origin = image.path["site"]
        site, source = self._site_of(raw, origin)
        return [(site, source if site else origin)]  # unknown: 'path:site:unmatched', as counted in summary.json

    def _site_from_mapping_constant(self, image: _Image) -> list[Reading]:
        constant = self.mapping.site_constant if image.row is not None else None
        return [self._site_of(constant, "mapping:site_constant")] if constant else []

    def _site_from_dicom(self, image: _Image) -> list[Reading]:
        tag = self.config.site_tag
        return [self._site_of(image.tags[tag], f"dicom:{tag}")] if image.tags.get(tag) else []

    def _site_from_config_constant(self, image: _Image) -> list[Reading]:
        constant = self.config.site_constant
        return [self._site_of(constant, "config:site_constant")] if constant else []

    def _view_from_csv(self, image: _Image) -> list[Reading]:
        columns = self.mapping.view_columns if image.row is not None else []
        return [self._view(h.clean(image.row.get(column)), f"csv:{column}") for column in columns]

    def _view_from_path(self, image: _Image) -> list[Reading]:
        return [self._view(h.clean(image.path["view"][0]), image.path["view"][1])] if "view" in image.path else []

    def _view_from_dicom(self, image: _Image) -> list[Reading]:
        raw = image.tags.get("ViewPosition")
        return [self._view(h.clean(raw), "dicom:ViewPosition")] if raw else []

    def _age_from_csv(self, image: _Image) -> list[Reading]:
        m, row = self.mapping, image.row
        if row is not None and m.age_column:
            raw_age = h.clean(row.get(m.age_column))
            if raw_age is not None and raw_age in m.age_missing_values:
                raw_age = None  # a placeholder: cleaned before parsing, so 0 never survives as an age
            return [self._age(raw_age, f"csv:{m.age_column}")]
        if row is not None and m.age_from_birth is not None:
            birth, date = row.get(m.age_from_birth.birth_column), row.get(m.age_from_birth.date_column)
            return [h.age_from_birth_year(birth, date, "csv:birth_year")]
        return []

    def _age_from_path(self, image: _Image) -> list[Reading]:
        return [self._age(*image.path["age"])] if "age" in image.path else []

    def _age_from_dicom(self, image: _Image) -> list[Reading]:
        raw = image.tags.get("PatientAge")
        return [self._age(raw, "dicom:PatientAge")] if raw else []

    def _sex_from_csv(self, image: _Image) -> list[Reading]:
        column = self.mapping.sex_column if image.row is not None else None
        return [self._sex(image.row.get(column), f"csv:{column}")] if column else []

    def _sex_from_path(self, image: _Image) -> list[Reading]:
        return [self._sex(*image.path["sex"])] if "sex" in image.path else []

    def _sex_from_dicom(self, image: _Image) -> list[Reading]:
        raw = image.tags.get("PatientSex")
        return [self._sex(raw, "dicom:PatientSex")] if raw else []

    def _patient_from_csv(self, image: _Image) -> list[Reading]:
        column = self.mapping.patient_column if image.row is not None else None
        return [(h.clean(image.row.get(column)), f"csv:{column}")] if column else []

    def _patient_from_csv_regex(self, image: _Image) -> list[Reading]:
        m = self.mapping
        if image.row is None or not m.patient_regex:
            return []
        found = re.search(m.patient_regex, str(image.row.get(m.file_column, "")))
        if not found:
            return []
        return [(found.group(1) if found.groups() else found.group(0), f"csv:{m.file_column}~regex")]

    def _patient_from_path(self, image: _Image) -> list[Reading]:
        if "patient" not in image.path:
            return []
        raw, origin = image.path["patient"]
        return [(h.clean(raw), origin)]

    def _patient_from_dicom(self, image: _Image) -> list[Reading]:
        # hashed with the salt by fields(): the ID itself never leaves
        return [(h.clean(image.patient_id), "dicom:PatientID")] if image.patient_id else []

    def _patient_from_file(self, image: _Image) -> list[Reading]:
        # without an ID every image is its own patient (the split cannot see relatives)
        return [(f"file:{image.fallback_id}", "none:one_patient_per_image")]

    def _modality_from_csv(self, image: _Image) -> list[Reading]:
        m = self.mapping
        raw = h.clean(image.row.get(m.modality_column)) if image.row is not None and m.modality_column else None
        if raw is None:
            return []
        mapped = {k.upper(): v for k, v in m.modality_map.items()}.get(raw.upper(), raw)
        return [(mapped.upper(), f"csv:{m.modality_column}")]

    def _modality_from_path(self, image: _Image) -> list[Reading]:
        if "modality" not in image.path:
            return []
        raw, origin = image.path["modality"]
        raw = h.clean(raw)
        return [(raw.upper() if raw else "unknown", origin)]

    def _modality_from_dicom(self, image: _Image) -> list[Reading]:
        raw = image.tags.get("Modality")
        return [(raw, "dicom:Modality")] if raw else []


# PRECEDENCE's readers: (field, source) -> the readings that source offers for that field of one image
READERS: dict[tuple[str, str], Callable[[Harmoniser, _Image], list[Reading]]] = {
    ("site", "csv"): Harmoniser._site_from_csv,
    ("site", "path"): Harmoniser._site_from_path,
    ("site", "mapping_constant"): Harmoniser._site_from_mapping_constant,
    ("site", "dicom"): Harmoniser._site_from_dicom,
    ("site", "config_constant"): Harmoniser._site_from_config_constant,
    ("view", "csv"): Harmoniser._view_from_csv,
    ("view", "path"): Harmoniser._view_from_path,
    ("view", "dicom"): Harmoniser._view_from_dicom,
    ("age", "csv"): Harmoniser._age_from_csv,
    ("age", "path"): Harmoniser._age_from_path,
    ("age", "dicom"): Harmoniser._age_from_dicom,
    ("sex", "csv"): Harmoniser._sex_from_csv,
    ("sex", "path"): Harmoniser._sex_from_path,
    ("sex", "dicom"): Harmoniser._sex_from_dicom,
    ("patient", "csv"): Harmoniser._patient_from_csv,
    ("patient", "csv_regex"): Harmoniser._patient_from_csv_regex,
    ("patient", "path"): Harmoniser._patient_from_path,
    ("patient", "dicom"): Harmoniser._patient_from_dicom,
    ("patient", "file"): Harmoniser._patient_from_file,
    ("modality", "csv"): Harmoniser._modality_from_csv,
    ("modality", "path"): Harmoniser._modality_from_path,
    ("modality", "dicom"): Harmoniser._modality_from_dicom,
}
