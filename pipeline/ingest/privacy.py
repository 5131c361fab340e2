"""Patient identifiers in file names: scrubbed from every output of an ingest.

Hospitals export files as ``Doe_Jane_chest.dcm`` or ``<patient id>.dcm``. The file's own patient name parts and IDs
(the DICOM patient name and ID elements, never written out: :func:`pipeline.ingest.dicom.identifier_tokens`) and its CSV patient column value, each of >= 3 characters, are replaced case-insensitively by
``[patient]`` in the manifest ``path`` and mask paths, and the image_id gets a short salted hash instead, so ids stay
unique. Rejects, summary.json and the console see the same scrubbing (each scrubbed file's path, name and stem is
replaced wherever their text repeats it). Nothing downstream re-opens a source file by its manifest path (the cache holds the
pixels), so the scrubbed path loses nothing but the identifier.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pipeline.ingest.dicom import MIN_TOKEN  # the identifiers' own floor: shorter parts are never tokens

if TYPE_CHECKING:
    from pipeline.artefacts.ingest_summary import PatientIdentifiers

TOKEN = "[patient]"


@dataclass
class PathScrubber:
    """Collects the scrubbed paths of one ingest. ``salt``: the patient-key salt (the image_id hash uses it, so the
    identifier cannot be recovered by hashing guesses)."""

    salt: str
    scrubbed: dict[str, str] = field(default_factory=dict)  # original manifest path -> scrubbed path
    tokens: set[str] = field(default_factory=set)  # every identifier found in some file name
    original: dict[str, str] = field(default_factory=dict)  # scrubbed path -> original (memory only)
    _names: list[tuple[str, str]] | None = field(default=None, repr=False)  # (original, scrubbed), longest first

    def path(self, relative: str, identifiers: tuple[str, ...] | list[str]) -> str:
        """``relative`` with each of the file's identifiers replaced by ``[patient]`` (counted when any was)."""
        found = [t for t in _usable(identifiers) if t.lower() in relative.lower()]
        if not found:
            return relative
        self.tokens.update(found)
        out = _replace(relative, found)
        if out in self.original:  # two files differing only by the identifier: keep the paths unique
            out = _replace(relative, found, f"[patient-{self._digest(relative)}]")
        self.scrubbed[relative], self.original[out] = out, relative
        self._names = None
        return out

    def beside(self, relative: str, identifiers: tuple[str, ...] | list[str]) -> str:
        """A file that goes with a scrubbed image (its mask) scrubbed the same way, not counted again."""
        return _replace(relative, _usable(identifiers))

    def image_id(self, path: str, image_id: str) -> str:
        """The image_id of the file whose (scrubbed) manifest path is ``path``: the identifier as
        'patient-<salted hash of the original path>', so ids stay unique and say nothing."""
        if path not in self.original:
            return image_id
        return re.sub(r"\[patient(?:-[0-9a-f]+)?\]", f"patient-{self._digest(self.original[path])}", image_id)

    def _digest(self, original: str) -> str:
        return hashlib.sha256(f"{self.salt}\x00{original}".encode()).hexdigest()[:10]

    def text(self, value: str) -> str:
        """Any text (a reject's path or detail, a summary string) with each scrubbed file's original path, name and
        stem replaced by its scrubbed one (not every token everywhere: a surname 'Doe' must not turn 'does' into
        '[patient]s' in a message)."""
        if not self.scrubbed:
            return value
        if self._names is None:
            from pipeline.ingest.discover import image_base

            pairs: dict[str, str] = {}
            for original, scrubbed in self.scrubbed.items():
                base, new = original.rsplit("/", 1)[-1], scrubbed.rsplit("/", 1)[-1]
                pairs.update({original: scrubbed, base: new, image_base(base): image_base(new)})
            self._names = sorted(pairs.items(), key=lambda item: len(item[0]), reverse=True)
        for original, scrubbed in self._names:
            if original.lower() in value.lower():
                value = re.sub(re.escape(original), lambda _, s=scrubbed: s, value, flags=re.IGNORECASE)
        return value

    def deep(self, value: Any) -> Any:
        """:meth:`text` applied to every string of a JSON-like value (dict keys too)."""
        if not self.scrubbed:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {self.deep(k): self.deep(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.deep(v) for v in value]
        return value

    def as_json(self) -> dict[str, Any]:
        return {"n": len(self.scrubbed), "token": TOKEN,
                "note": "file names held the image's patient name or ID; they are written scrubbed"}


def warning_line(entry: PatientIdentifiers) -> str | None:
    """The console warning for summary.json's ``patient_identifiers_in_file_names``, None when there were none."""
    n = entry.n
    if not n:
        return None
    return (f"ingest: WARNING: {n} file name{'s' if n != 1 else ''} contained patient identifiers (name or ID); "
            f"{'they are' if n != 1 else 'it is'} written scrubbed ({TOKEN} in paths, a salted hash in image_id); "
            "rename the source files to remove them")


def _usable(identifiers: tuple[str, ...] | list[str]) -> list[str]:
    tokens = {t.strip() for t in identifiers if t and len(t.strip()) >= MIN_TOKEN}
    return sorted(tokens, key=len, reverse=True)  # longest first: 'Secretname^Zorglub' before 'Zorglub'


def _replace(text: str, tokens: list[str], by: str = TOKEN) -> str:
    for token in tokens:
        text = re.sub(re.escape(token), lambda _: by, text, flags=re.IGNORECASE)
    return text


def header_tokens(path: str) -> tuple[str, ...]:
    """The identifiers in a DICOM file's header (read up to the pixels; () for other files or unreadable ones), for
    files rejected before decoding."""
    from pathlib import Path

    from pipeline.ingest.dicom import IDENTIFIER_KEYWORDS, IMAGE_SUFFIXES, identifier_tokens

    if Path(path).suffix.lower() in IMAGE_SUFFIXES:
        return ()
    import pydicom
    from pydicom.datadict import tag_for_keyword

    try:
        ds = pydicom.dcmread(path, force=True, stop_before_pixels=True,
                             specific_tags=[tag_for_keyword(k) for k in IDENTIFIER_KEYWORDS])
        return identifier_tokens(ds)
    except Exception:  # noqa: BLE001  nothing readable: nothing known to scrub
        return ()
