"""The collections one ingest reads: the CLI's SOURCE (+ --metadata), or the config's ``sources:`` list.

Each source gets its own config view (its metadata mapping, site constant/tag and path fields over the shared
top-level settings), so two hospitals' exports combine without a merge script. Manifest paths of several sources are
'<name>/<path under its folder>', so they stay unique.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import ConfigError, DataError
from pipeline.ingest.config import IngestConfig, MetadataMapping, resolve_spec
from pipeline.ingest.discover import SourceListing
from pipeline.stage import sha256_file


@dataclass
class SourceInputs:
    name: str  # "" for the CLI's single SOURCE (manifest paths unprefixed, as always)
    root: Path
    metadata: Path | None
    config: IngestConfig  # the config as this source reads it
    listing: SourceListing | None = None

    @property
    def mapping(self) -> MetadataMapping | None:
        mapping = self.config.metadata_mapping
        return mapping if isinstance(mapping, MetadataMapping) else None

    def metadata_hash(self) -> str:
        return sha256_file(self.metadata) if self.metadata is not None else "-"

    def check(self, out: Path) -> None:
        """SOURCE exists, --out lies outside it, and the CSV and its mapping come together."""
        label = f"source {self.name!r}" if self.name else "SOURCE"
        if not self.root.is_dir():
            what = f"sources[{self.name}].path" if self.name else "SOURCE"
            state = "a file" if self.root.exists() else "not found"
            raise DataError(f"ingest: {what} must be a folder of DICOM or PNG/JPEG files, got {str(self.root)!r} "
                            f"({state}). Fix the path.")
        if self.metadata is not None and not self.metadata.is_file():
            what = f"sources[{self.name}].metadata" if self.name else "--metadata"
            state = "a folder" if self.metadata.exists() else "not found"
            raise DataError(f"ingest: {what} must be a CSV file, got {str(self.metadata)!r} ({state}). Fix the path "
                            "(a relative path in a config is read from the config file's folder).")
        if out == self.root or self.root in out.parents:
            raise ConfigError(f"ingest: --out must lie outside {label} (it is never modified), got {str(out)!r}.")
        if self.metadata is not None and self.mapping is None:
            raise ConfigError(
                f"ingest: metadata_mapping must be set for {label} when a metadata CSV is given, got none. "
                "Add e.g. `metadata_mapping: data_manifests/sources/nih_chestxray14.yaml` to the config."
            )
        if self.metadata is None and self.mapping is not None and self.mapping.label_column:
            raise ConfigError(
                f"ingest: {label} must name the CSV that the mapping {self.mapping.name!r} reads labels from, got "
                "none. Pass --metadata labels.csv (or `metadata:` in the source's entry)."
            )


def from_config(config: IngestConfig) -> list[SourceInputs]:
    """One SourceInputs per ``sources:`` entry (named after its folder unless named)."""
    out = []
    for spec in config.sources:
        spec = resolve_spec(spec, None)  # already absolute when loaded from a file
        root = Path(spec.path)
        update = {"sources": [], "metadata_mapping": spec.metadata_mapping or config.metadata_mapping}
        for key in ("site_constant", "site_tag", "path_fields"):
            if getattr(spec, key) is not None:
                update[key] = getattr(spec, key)
        out.append(SourceInputs(
            name=spec.name or root.name, root=root, metadata=Path(spec.metadata) if spec.metadata else None,
            config=config.model_copy(update=update),
        ))
    names = [s.name for s in out]
    if len(names) != len(set(names)):
        raise ConfigError(f"ingest: sources must have unique names, got {names}. Give each entry a `name:`.")
    return out
