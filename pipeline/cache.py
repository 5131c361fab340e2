"""The preprocessed image cache that ingest writes and every later stage reads (no DICOM decoding after ingest).

Layout inside an ingest directory::

    cache/
      cache.json                     {"n": N, "size": S, "dtype": "float16", "arrays": [...], "inputs_hash": ...}
      images.npy                     float16 (N, S, S), intensities in [0, 1], MONOCHROME2 (bright = dense)
      lung_masks.npy                 uint8   (N, S, S), 1 inside the lung fields (all 0 where the manifest has none)
      shortcut_masks.npy             uint8   (N, S, S), codes of pipeline.regions.SHORTCUT_KINDS, 0 = none
      lesion_masks.npy               uint8   (N, S, S), optional
      counterfactual_images.npy      float16 (M, S, S), optional: same patients rendered in the other position
      counterfactual_lung_masks.npy  uint8   (M, S, S), optional
      counterfactual_shortcut_masks.npy uint8 (M, S, S), optional

Row ``i`` of the image arrays belongs to the manifest row whose ``cache_index == i``; the manifest column
``counterfactual_index`` (-1 where none) indexes the counterfactual arrays. All arrays are ``.npy`` files opened as
read-only memory maps, so worker processes share the pages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import DataError

CACHE_DIRNAME = "cache"
REQUIRED_ARRAYS = ("images", "lung_masks", "shortcut_masks")
OPTIONAL_ARRAYS = (
    "lesion_masks",
    "counterfactual_images",
    "counterfactual_lung_masks",
    "counterfactual_shortcut_masks",
)


@dataclass
class ImageCache:
    """Read-only view of an ingest directory's cache (memory-mapped arrays)."""

    root: Path
    info: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @classmethod
    def open(cls, ingest_dir: str | Path) -> ImageCache:
        """The cache of a finished ingest (pipeline/manifest.py ``require_finished_ingest``). Raises DataError naming
        the file when cache.json or a required array is missing, or the ingest did not finish (no stage.json)."""
        from pipeline.manifest import require_finished_ingest

        root = Path(ingest_dir) / CACHE_DIRNAME
        info_path = root / "cache.json"
        if not info_path.is_file():
            raise DataError(
                f"cache: {info_path} must exist, got nothing there. Run `cxr-fishr ingest` into {ingest_dir} first."
            )
        require_finished_ingest(ingest_dir)
        info = json.loads(info_path.read_text(encoding="utf-8"))
        arrays: dict[str, np.ndarray] = {}
        for name in REQUIRED_ARRAYS + OPTIONAL_ARRAYS:
            path = root / f"{name}.npy"
            if path.is_file():
                arrays[name] = np.load(path, mmap_mode="r")
            elif name in REQUIRED_ARRAYS:
                raise DataError(f"cache: {path} must exist (a required cache array), got nothing. Re-run ingest.")
        return cls(root=root, info=info, arrays=arrays)

    @property
    def size(self) -> int:
        return int(self.info["size"])

    def __len__(self) -> int:
        return int(self.arrays["images"].shape[0])

    @property
    def images(self) -> np.ndarray:
        return self.arrays["images"]

    @property
    def lung_masks(self) -> np.ndarray:
        return self.arrays["lung_masks"]

    @property
    def shortcut_masks(self) -> np.ndarray:
        return self.arrays["shortcut_masks"]

    def get(self, name: str) -> np.ndarray | None:
        """An optional array (``lesion_masks``, ``counterfactual_images``, ...) or None when absent."""
        return self.arrays.get(name)

    @property
    def has_counterfactuals(self) -> bool:
        return "counterfactual_images" in self.arrays


def write_cache_info(root: Path, info: dict[str, Any]) -> None:
    """Write cache.json last (atomically), after every array is in place."""
    from pipeline.stage import write_json_atomic

    write_json_atomic(Path(root) / "cache.json", info)
