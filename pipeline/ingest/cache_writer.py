"""Write the image cache of ``pipeline/cache.py`` row by row into ``.npy`` memory maps, then trim it.

Arrays are allocated for every candidate (``np.lib.format.open_memmap``). Row i belongs to candidate i and is written
by the worker that decodes it (``pipeline.ingest.preprocess``, with pwrite into the same file; the parent reads it
through its map and only calls :meth:`CacheWriter.mark_stored`). At the end the arrays are compacted in place
(kept rows move down, never up) and shrunk by rewriting the header and truncating the file: no second copy of a
cache that may be larger than memory. ``cache.json`` is written last.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.cache import CACHE_DIRNAME, write_cache_info

IMAGE_ARRAYS = {"images": np.float16, "lung_masks": np.uint8, "shortcut_masks": np.uint8, "lesion_masks": np.uint8}
MASK_ARRAY = {"lung": "lung_masks", "shortcut": "shortcut_masks", "lesion": "lesion_masks"}


def _shrink_npy(path: Path, rows: int) -> None:
    """Keep the first ``rows`` rows of a C-ordered .npy file: same-length header with the new shape, then truncate."""
    with open(path, "r+b") as handle:
        version = np.lib.format.read_magic(handle)
        header_start = handle.tell()
        shape, fortran, dtype = (
            np.lib.format.read_array_header_1_0(handle) if version == (1, 0) else np.lib.format.read_array_header_2_0(handle)
        )
        data_start = handle.tell()
        length_bytes = 2 if version == (1, 0) else 4
        header_len = data_start - header_start - length_bytes
        new_shape = (rows, *shape[1:])
        text = repr({"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": fortran, "shape": new_shape})
        if len(text) + 1 > header_len:  # cannot happen when rows <= old rows, checked anyway
            raise ValueError(f"cannot shrink {path}: header would grow")
        handle.seek(header_start + length_bytes)
        handle.write((text.ljust(header_len - 1) + "\n").encode("latin1"))
        row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
    os.truncate(path, data_start + rows * row_bytes)


class CacheWriter:
    """Memory-mapped arrays under ``<ingest_dir>/cache`` (images and masks; counterfactual images and masks), one row
    per candidate, filled by the decoding workers."""

    def __init__(self, ingest_dir: Path, *, capacity: int, size: int, counterfactual_capacity: int = 0) -> None:
        self.root = Path(ingest_dir) / CACHE_DIRNAME
        self.root.mkdir(parents=True, exist_ok=True)
        self.size = size
        self.arrays: dict[str, np.memmap] = {}
        self.n = 0
        self.has_lesions = False
        for name, dtype in IMAGE_ARRAYS.items():
            self.arrays[name] = self._open(name, dtype, max(capacity, 1))
        if counterfactual_capacity:
            for name, dtype in (("counterfactual_images", np.float16), ("counterfactual_lung_masks", np.uint8),
                                ("counterfactual_shortcut_masks", np.uint8)):
                self.arrays[name] = self._open(name, dtype, counterfactual_capacity)

    def _open(self, name: str, dtype: Any, rows: int) -> np.memmap:
        return np.lib.format.open_memmap(
            self.root / f"{name}.npy", mode="w+", dtype=dtype, shape=(rows, self.size, self.size)
        )

    def mark_stored(self, row: int, mask_kinds: tuple[str, ...] | list[str]) -> int:
        """Row ``row`` was written by a worker (:func:`pipeline.ingest.preprocess.process` with ``cache_dir``)."""
        self.has_lesions |= "lesion" in mask_kinds
        self.n = max(self.n, row + 1)
        return row

    def finish(self, keep: Sequence[int], keep_cf: Sequence[int], info: dict[str, Any]) -> tuple[dict, dict]:
        """Keep rows ``keep`` (increasing) and counterfactual rows ``keep_cf``; returns old -> new row maps."""
        remap = self._compact([n for n in self.arrays if not n.startswith("counterfactual")], keep)
        remap_cf = self._compact([n for n in self.arrays if n.startswith("counterfactual")], keep_cf)
        names = list(self.arrays)
        self.arrays.clear()  # close the memmaps before truncating their files
        for name in names:
            rows = len(keep_cf) if name.startswith("counterfactual") else len(keep)
            _shrink_npy(self.root / f"{name}.npy", rows)
        if not self.has_lesions:
            (self.root / "lesion_masks.npy").unlink()
            names.remove("lesion_masks")
        if not keep_cf:
            for name in [n for n in names if n.startswith("counterfactual")]:
                (self.root / f"{name}.npy").unlink()
                names.remove(name)
        write_cache_info(self.root, {
            "n": len(keep), "size": self.size, "dtype": "float16", "arrays": names,
            "n_counterfactual": len(keep_cf), **info,
        })
        return remap, remap_cf

    def _compact(self, names: list[str], keep: Sequence[int]) -> dict[int, int]:
        remap = {}
        for new, old in enumerate(keep):
            if old < new:
                raise ValueError("keep must be increasing")
            if old != new:
                for name in names:
                    self.arrays[name][new] = self.arrays[name][old]
            remap[old] = new
        # no flush (msync): it forces the pages to disk (25 ms for a 500-image cache) but the file is read through
        # the same page cache, and no other output of a stage is fsynced either
        return remap
