"""Find the images under SOURCE (recursively) and pair each with the masks written beside it.

A file whose name ends in one of ``pipeline.regions.MASK_SUFFIXES`` is a mask, not an image: ``x_lungs.png`` belongs
to ``x.dcm`` (or ``x``, ``x.png``) in the same folder. A mask with no image beside it is reported, not ingested.
Everything else is an image candidate; the decoder decides whether it really is one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipeline.ingest.dicom import IMAGE_SUFFIXES
from pipeline.regions import LESION_MASK_SUFFIX, LUNG_MASK_SUFFIX, SHORTCUT_MASK_SUFFIX

MASK_KINDS = {LUNG_MASK_SUFFIX: "lung", SHORTCUT_MASK_SUFFIX: "shortcut", LESION_MASK_SUFFIX: "lesion"}
_STRIPPED_SUFFIXES = (".dcm", ".dicom", ".dic", *IMAGE_SUFFIXES)


@dataclass
class Candidate:
    path: Path
    relative: str  # posix path relative to the source root
    masks: dict[str, Path] = field(default_factory=dict)  # kind (lung|shortcut|lesion) -> mask file


def image_base(name: str) -> str:
    """The name a mask would share: 'x.dcm' -> 'x', 'x' -> 'x', '1.2.840.1' -> '1.2.840.1' (not a suffix)."""
    lower = name.lower()
    for suffix in _STRIPPED_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def mask_kind(name: str) -> tuple[str, str] | None:
    """(kind, base) of a mask file name, or None when it is not a mask."""
    for suffix, kind in MASK_KINDS.items():
        if name.endswith(suffix):
            return kind, name[: -len(suffix)]
    return None


def discover(root: Path) -> tuple[list[Candidate], list[Path]]:
    """Image candidates sorted by relative path, and orphan masks (no image beside them)."""
    files = sorted(p for p in root.rglob("*") if p.is_file())
    candidates: list[Candidate] = []
    by_base: dict[tuple[Path, str], Candidate] = {}
    masks: list[tuple[Path, str, str]] = []
    for path in files:
        kind = mask_kind(path.name)
        if kind is not None:
            masks.append((path, *kind))
            continue
        candidate = Candidate(path=path, relative=path.relative_to(root).as_posix())
        candidates.append(candidate)
        by_base.setdefault((path.parent, image_base(path.name)), candidate)
    orphans = []
    for path, kind, base in masks:
        owner = by_base.get((path.parent, base))
        if owner is None:
            orphans.append(path)
        else:
            owner.masks[kind] = path
    return candidates, orphans


def pair_counterfactuals(candidates: list[Candidate], root: Path | None) -> dict[str, Candidate]:
    """relative path -> the counterfactual image with the same relative path under ``root`` (with its masks)."""
    if root is None or not root.is_dir():
        return {}
    found, _ = discover(root)
    by_relative = {c.relative: c for c in found}
    return {c.relative: by_relative[c.relative] for c in candidates if c.relative in by_relative}
