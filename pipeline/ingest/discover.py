"""Find the images under SOURCE (recursively) and pair each with the masks written beside it.

A file whose name ends in one of ``pipeline.regions.MASK_SUFFIXES`` is a mask, not an image: ``x_lungs.png`` belongs
to ``x.dcm`` (or ``x``, ``x.png``) in the same folder. A mask with no image beside it is reported, not ingested.
A file that is plainly not an image (a CSV, spreadsheet, document, archive, or a hidden/system file such as
``.DS_Store`` or ``Thumbs.db``) is skipped before matching and counted (``skipped_non_image_files``), not reported as
a rejected image. Everything else is an image candidate (a file without suffix may be DICOM); the decoder decides.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from stat import S_ISREG

from pipeline.ingest.dicom import IMAGE_SUFFIXES
from pipeline.regions import LESION_MASK_SUFFIX, LUNG_MASK_SUFFIX, SHORTCUT_MASK_SUFFIX

MASK_KINDS = {LUNG_MASK_SUFFIX: "lung", SHORTCUT_MASK_SUFFIX: "shortcut", LESION_MASK_SUFFIX: "lesion"}
_MASK_SUFFIXES = tuple(MASK_KINDS)
_STRIPPED_SUFFIXES = (".dcm", ".dicom", ".dic", *IMAGE_SUFFIXES)
# suffixes of files that are never images: metadata exports, documents, archives, code (lower-case, with the dot)
NOT_IMAGE_SUFFIXES = frozenset({
    ".csv", ".tsv", ".txt", ".json", ".jsonl", ".yaml", ".yml", ".md", ".rst", ".xlsx", ".xls", ".xlsm", ".ods",
    ".pdf", ".html", ".htm", ".xml", ".zip", ".gz", ".tgz", ".tar", ".bz2", ".xz", ".7z", ".rar", ".doc", ".docx",
    ".rtf", ".odt", ".log", ".py", ".ipynb", ".sh", ".ini", ".cfg", ".toml", ".parquet", ".db", ".sqlite", ".pkl",
})
# operating-system clutter without a telling suffix (macOS, Windows)
SYSTEM_FILE_NAMES = frozenset({"thumbs.db", "desktop.ini", "ehthumbs.db", "icon\r"})


def not_an_image(parts: tuple[str, ...]) -> bool:
    """True for a file that is plainly not an image: a hidden file or one in a hidden folder ('.DS_Store',
    '.git/...', macOS '._x.png' forks), a system file (Thumbs.db), or a document/table/archive suffix."""
    name = parts[-1]
    if any(part.startswith(".") for part in parts) or name.lower() in SYSTEM_FILE_NAMES:
        return True
    dot = name.rfind(".")
    return dot > 0 and name[dot:].lower() in NOT_IMAGE_SUFFIXES


@dataclass
class Candidate:
    """One image file and the masks beside it, as posix paths under the source root (for the manifest and rejects);
    ``path`` and ``masks`` give the files to open. Strings, not pathlib: a Path per file cost more than the rest of
    discovery."""

    relative: str  # as the manifest names it: with several sources '<source name>/<path under its folder>'
    prefix: str  # the source root with a trailing separator
    mask_relative: dict[str, str] = field(default_factory=dict)  # kind (lung|shortcut|lesion) -> mask file
    inner: int = 0  # leading characters of ``relative`` (and of each mask) that name the source, not the file

    @property
    def local(self) -> str:
        """The path under the source folder (what a CSV and ``path_fields`` refer to)."""
        return self.relative[self.inner:]

    @property
    def path(self) -> str:
        return self.prefix + self.relative[self.inner:].replace("/", os.sep)

    @property
    def masks(self) -> dict[str, str]:
        return {kind: self.prefix + rel[self.inner:].replace("/", os.sep) for kind, rel in self.mask_relative.items()}


def image_base(name: str) -> str:
    """The name a mask would share: 'x.dcm' -> 'x', 'x' -> 'x', '1.2.840.1' -> '1.2.840.1' (not a suffix)."""
    lower = name.lower()
    for suffix in _STRIPPED_SUFFIXES:
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def mask_kind(name: str) -> tuple[str, str] | None:
    """(kind, base) of a mask file name, or None when it is not a mask."""
    if not name.endswith(_MASK_SUFFIXES):
        return None
    for suffix, kind in MASK_KINDS.items():
        if name.endswith(suffix):
            return kind, name[: -len(suffix)]
    return None


@dataclass(frozen=True)
class SourceListing:
    """Every regular file under ``root`` (links to files followed, links to folders not: as ``Path.rglob``), as
    relative parts in pathlib's order with their sizes and mtimes. Listed once per ingest: the reuse check, the
    discovery of images and stage.json's input hash all read it."""

    root: Path
    files: tuple[tuple[tuple[str, ...], int, int], ...]  # (relative parts, size, mtime_ns)

    @classmethod
    def of(cls, root: Path) -> SourceListing:
        files = []
        for folder, _, names in os.walk(root):
            parts = Path(folder).relative_to(root).parts
            for name in names:
                try:
                    stat = os.stat(os.path.join(folder, name))
                except OSError:  # a dangling link: not a file
                    continue
                if S_ISREG(stat.st_mode):
                    files.append(((*parts, name), stat.st_size, stat.st_mtime_ns))
        return cls(root, tuple(sorted(files, key=lambda item: item[0])))

    @cached_property
    def digest(self) -> str:
        """Names, sizes and mtimes of every file (no cap: a changed 20001st file must count too)."""
        digest = hashlib.sha256()
        for parts, size, mtime_ns in self.files:
            digest.update(f"{'/'.join(parts)}|{size}|{mtime_ns}\n".encode())
        return digest.hexdigest()


def discover(
    root: Path, listing: SourceListing | None = None, *, name: str = "", skipped: list[str] | None = None,
) -> tuple[list[Candidate], list[str]]:
    """Image candidates sorted by relative path, and orphan masks (no image beside them), as manifest paths: prefixed
    with '<name>/' when ``name`` is given (one of several sources). Files that are plainly not images
    (:func:`not_an_image`) are left out and appended, as manifest paths, to ``skipped`` when given."""
    listing = listing if listing is not None else SourceListing.of(root)
    prefix = os.path.join(str(root), "")
    head = f"{name}/" if name else ""
    candidates: list[Candidate] = []
    by_base: dict[tuple[tuple[str, ...], str], Candidate] = {}
    masks: list[tuple[str, tuple[str, ...], str, str]] = []
    for parts, _, _ in listing.files:
        file_name, folder, relative = parts[-1], parts[:-1], head + "/".join(parts)
        if not_an_image(parts):
            if skipped is not None:
                skipped.append(relative)
            continue
        kind = mask_kind(file_name)
        if kind is not None:
            masks.append((relative, folder, *kind))
            continue
        candidate = Candidate(relative=relative, prefix=prefix, inner=len(head))
        candidates.append(candidate)
        by_base.setdefault((folder, image_base(file_name)), candidate)
    orphans = []
    for relative, folder, kind, base in masks:
        owner = by_base.get((folder, base))
        if owner is None:
            orphans.append(relative)
        else:
            owner.mask_relative[kind] = relative
    return candidates, orphans


def pair_counterfactuals(candidates: list[Candidate], listing: SourceListing | None) -> dict[str, Candidate]:
    """relative path -> the counterfactual image with the same relative path under ``listing.root`` (with its
    masks); none without a listing."""
    if listing is None:
        return {}
    found, _ = discover(listing.root, listing)
    by_relative = {c.relative: c for c in found}
    return {c.relative: by_relative[c.relative] for c in candidates if c.relative in by_relative}
