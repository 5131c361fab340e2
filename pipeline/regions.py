"""Region codes shared by synth (mask writing), ingest (mask caching), audit (localisation) and report.

Shortcut masks are single-channel label images: 0 = no shortcut, otherwise the code of the shortcut kind.
Where kinds overlap, the later (higher) code is drawn on top.
"""

from __future__ import annotations

SHORTCUT_KINDS: dict[int, str] = {
    1: "scapula_shoulder",
    2: "devices",
    3: "text_stamp",
    4: "site_mark",
    5: "collimation",
}
SHORTCUT_CODES: dict[str, int] = {name: code for code, name in SHORTCUT_KINDS.items()}

# File-name suffixes of the masks written beside each image (synth) and looked for beside each image (ingest).
LUNG_MASK_SUFFIX = "_lungs.png"
SHORTCUT_MASK_SUFFIX = "_shortcuts.png"
LESION_MASK_SUFFIX = "_lesion.png"
MASK_SUFFIXES = (LUNG_MASK_SUFFIX, SHORTCUT_MASK_SUFFIX, LESION_MASK_SUFFIX)
