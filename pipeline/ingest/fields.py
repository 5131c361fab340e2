"""One image's manifest fields from its metadata CSV row and/or DICOM tags, each with a ``*_source`` column.

Precedence: a column the CSV mapping names wins over the DICOM tag (the hospital's export is the curated record),
the DICOM tag wins over a constant from the config. PatientName is never read; PatientID leaves only as a salted
hash.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from pipeline.ingest import harmonise as h
from pipeline.ingest.config import IngestConfig, MetadataMapping


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
        """The fields of one image; ``label`` is None when unknown. ``relative``: the file's path under its source,
        read by ``path_fields`` (a configured path field replaces the DICOM tag and constants of that field; a file
        its pattern does not match gets the field unknown)."""
        m, c = self.mapping, self.config
        row = row if (row is not None and m is not None) else None
        tags = dict(tags or {})
        path = self.path_values(relative or fallback_id)
        for name, tag in (("site", c.site_tag), ("sex", "PatientSex"), ("age", "PatientAge"), ("modality", "Modality")):
            if name in path:  # the configured pattern decides, not the header
                tags.pop(tag, None)
        out: dict[str, Any] = {}
        out["site"], out["site_source"] = self._site_field(row, tags, path)

        candidates = [(row.get(col), f"csv:{col}") for col in m.view_columns] if row is not None else []
        if "view" in path:
            candidates.append(path["view"])
        elif tags.get("ViewPosition"):
            candidates.append((tags["ViewPosition"], "dicom:ViewPosition"))
        out["view"], out["view_source"] = self._first_view(candidates) if candidates else ("unknown", "none")

        texts = []
        if row is not None:
            texts += [(row.get(col), f"csv:{col}") for col in [*m.position_columns, *m.view_columns]]
        if "position" in path:
            texts.append(path["position"])
        else:
            texts += [(tags.get(tag), f"dicom:{tag}") for tag in c.position_tags if tags.get(tag)]
        out["position"], out["position_source"] = self._position(tuple(texts), out["view"])

        out["age_years"], out["age_source"] = self._age_field(row, tags, path)
        out["age_group"] = h.age_group(out["age_years"], c.child_max_years)

        sex, source = "unknown", "none"
        if row is not None and m.sex_column:
            sex, source = self._sex(row.get(m.sex_column), f"csv:{m.sex_column}")
        if sex == "unknown" and "sex" in path:
            sex, source = self._sex(*path["sex"])
        if sex == "unknown" and tags.get("PatientSex"):
            sex, source = self._sex(tags.get("PatientSex"), "dicom:PatientSex")
        out["sex"], out["sex_source"] = sex, source

        label, source = None, "none"
        if row is not None and m.label_column:
            label, source = self._label(row.get(m.label_column), f"csv:{m.label_column}")
        elif c.label_default is not None:
            label, source = c.label_default, "config:label_default"
        out["label"], out["label_source"] = label, source
        out["label_name"] = (m.label_name if m and m.label_name else None) or c.label_name

        out["patient_key"], out["patient_key_source"] = self._patient_field(row, path, patient_id, fallback_id)

        if "modality" in path:
            raw = h.clean(path["modality"][0])
            modality, source = (raw.upper(), path["modality"][1]) if raw else ("unknown", path["modality"][1])
        else:
            modality = tags.get("Modality") or "unknown"
            source = "dicom:Modality" if tags.get("Modality") else "none"
        if row is not None and m.modality_column:
            raw = h.clean(row.get(m.modality_column))
            if raw is not None:
                mapped = {k.upper(): v for k, v in m.modality_map.items()}.get(raw.upper(), raw)
                modality, source = mapped.upper(), f"csv:{m.modality_column}"
        out["modality"], out["modality_source"] = modality, source
        return out

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

    def _site_field(self, row: Mapping[str, Any] | None, tags: Mapping[str, str], path: dict) -> tuple[str, str]:
        m, c = self.mapping, self.config
        site, source = None, "none"
        if row is not None and m.site_column:
            site, source = self._site_of(row.get(m.site_column), f"csv:{m.site_column}")
        if site is None and "site" in path:
            site, source = self._site_of(*path["site"])
            return site or "unknown", source if site else path["site"][1]
        if site is None and row is not None and m.site_constant:
            site, source = self._site_of(m.site_constant, "mapping:site_constant")
        if site is None and tags.get(c.site_tag):
            site, source = self._site_of(tags.get(c.site_tag), f"dicom:{c.site_tag}")
        if site is None and c.site_constant:
            site, source = self._site_of(c.site_constant, "config:site_constant")
        return site or "unknown", source

    def _site_of(self, raw: object, origin: str) -> tuple[str | None, str]:
        text = h.clean(raw)
        if text is not None:
            self.raw_sites.add(text)  # every site name the data gave: site_map keys must match one of them
        return self._site(raw, origin)

    def _age_field(self, row: Mapping[str, Any] | None, tags: Mapping[str, str], path: dict) -> tuple[float, str]:
        m = self.mapping
        years, source = math.nan, "none"
        if row is not None and m.age_column:
            raw_age = h.clean(row.get(m.age_column))
            if raw_age is not None and raw_age in m.age_missing_values:
                raw_age = None  # a placeholder: cleaned before parsing, so 0 never survives as an age
            years, source = self._age(raw_age, f"csv:{m.age_column}")
        elif row is not None and m.age_from_birth is not None:
            years, source = h.age_from_birth_year(
                row.get(m.age_from_birth.birth_column), row.get(m.age_from_birth.date_column), "csv:birth_year"
            )
        if math.isnan(years) and "age" in path:
            years, source = self._age(*path["age"])
        if math.isnan(years) and tags.get("PatientAge"):
            years, source = self._age(tags.get("PatientAge"), "dicom:PatientAge")
        return years, source

    def _patient_field(
        self, row: Mapping[str, Any] | None, path: dict, patient_id: str | None, fallback_id: str
    ) -> tuple[str, str]:
        m = self.mapping
        pid, source = None, "none"
        if row is not None and m.patient_column:
            pid, source = h.clean(row.get(m.patient_column)), f"csv:{m.patient_column}"
        if pid is None and row is not None and m.patient_regex:
            found = re.search(m.patient_regex, str(row.get(m.file_column, "")))
            if found:
                pid, source = found.group(1) if found.groups() else found.group(0), f"csv:{m.file_column}~regex"
        if pid is None and "patient" in path:
            pid, source = h.clean(path["patient"][0]), path["patient"][1]
        elif pid is None and patient_id:
            pid, source = h.clean(patient_id), "dicom:PatientID"  # hashed with the salt just below
        if pid is None:  # without an ID every image is its own patient (the split cannot see relatives)
            pid, source = f"file:{fallback_id}", "none:one_patient_per_image"
        return patient_key(self._salt, pid), source

    def label_of(self, row: Mapping[str, Any]) -> tuple[int | None, str]:
        """(label, source) a CSV row maps to, before any decoding: source ends in ':missing' for a blank cell (kept
        unlabelled) and ':unmapped' for a value that is neither positive nor negative (rejected)."""
        if self.mapping is None or not self.mapping.label_column:
            return None, "none"
        return self._label(row.get(self.mapping.label_column), f"csv:{self.mapping.label_column}")

    def _first_view(self, candidates: list[tuple[object, str]]) -> tuple[str, str]:
        fallback = None
        for raw, origin in candidates:
            value, source = self._view(h.clean(raw), origin)
            if value != "unknown":
                return value, source
            fallback = fallback or (value, source)
        return fallback
