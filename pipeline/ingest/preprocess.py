"""Worker side of ingest: decode one image (and its masks and counterfactual) into cache-ready arrays.

Runs in a process pool; everything here is a module-level function of picklable arguments. Intensities are scaled
to [0, 1] per image (MONAI ``ScaleIntensity``), then the same spatial steps go to the image (area resize) and its
masks (nearest): optional centre crop -> square by padding / stretching / cropping -> ``Resize`` to the cache size.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.ingest.dicom import Decoded, Reject, decode_any, scrub

_TRANSFORMS: dict[tuple, Any] = {}


@dataclass(frozen=True)
class Task:
    path: str
    relative: str
    masks: dict[str, str]
    size: int
    aspect: str
    crop_fraction: float
    modalities: tuple[str, ...] | None
    counterfactual: Task | None = None


@dataclass
class Processed:
    relative: str
    ok: bool
    reason: str = ""
    detail: str = ""
    decoded: Decoded | None = None  # pixels dropped (set to an empty array) before returning to the parent
    image: np.ndarray | None = None
    masks: dict[str, np.ndarray] = field(default_factory=dict)
    rejected_masks: list[tuple[str, str, str]] = field(default_factory=list)  # (path, reason, detail)
    source_sha256: str = ""
    pixel_sha256: str = ""
    shape: tuple[int, int] = (0, 0)
    counterfactual: Processed | None = None


def _spatial(shape: tuple[int, int], size: int, aspect: str, crop_fraction: float, mode: str) -> list:
    """The spatial MONAI transforms for one input shape (cached: a cohort has few distinct shapes)."""
    from monai.transforms import CenterSpatialCrop, Resize, SpatialPad

    key = (shape, size, aspect, crop_fraction, mode)
    if key not in _TRANSFORMS:
        steps = []
        rows, cols = shape
        if crop_fraction < 1.0:
            rows, cols = max(1, int(round(rows * crop_fraction))), max(1, int(round(cols * crop_fraction)))
            steps.append(CenterSpatialCrop((rows, cols)))
        if aspect == "pad" and rows != cols:
            steps.append(SpatialPad((max(rows, cols),) * 2, mode="constant"))
        elif aspect == "crop" and rows != cols:
            steps.append(CenterSpatialCrop((min(rows, cols),) * 2))
        steps.append(Resize((size, size), mode=mode))
        if len(_TRANSFORMS) > 256:  # many distinct shapes: keep memory bounded
            _TRANSFORMS.clear()
        _TRANSFORMS[key] = steps
    return _TRANSFORMS[key]


def _apply(steps: list, array: np.ndarray) -> np.ndarray:
    # called one by one rather than through Compose: Compose's bookkeeping costs more than a 256 px resize
    for step in steps:
        array = step(array)
    return np.asarray(array)


def to_cache_image(pixels: np.ndarray, task: Task) -> np.ndarray:
    from monai.transforms import ScaleIntensity

    scaled = ScaleIntensity(minv=0.0, maxv=1.0)(pixels[None].astype(np.float32))
    out = _apply(_spatial(pixels.shape, task.size, task.aspect, task.crop_fraction, "area"), scaled)
    return np.clip(out[0], 0.0, 1.0).astype(np.float16)


def to_cache_masks(masks: dict[str, np.ndarray], task: Task) -> dict[str, np.ndarray]:
    """All masks of one image in one nearest-neighbour pass (stacked as channels)."""
    if not masks:
        return {}
    kinds = sorted(masks)
    stacked = np.stack([masks[k] for k in kinds]).astype(np.float32)
    out = _apply(_spatial(stacked.shape[1:], task.size, task.aspect, task.crop_fraction, "nearest"), stacked)
    return {kind: out[i].round().astype(np.uint8) for i, kind in enumerate(kinds)}


def _read_mask(path: str, kind: str) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        arr = np.asarray(image)
    if arr.ndim == 3:
        arr = arr[..., 0]
    if kind == "shortcut":  # label-coded: keep the codes
        return arr.astype(np.uint8)
    return (arr > 0).astype(np.uint8)


def process(task: Task) -> Processed:
    """Decode and preprocess one candidate; a reason instead of arrays when it cannot be used. Never raises on data.

    Call inside :func:`worker_settings` (set once per process: setting them per image costs more than the image).
    """
    try:
        return _process(task)
    except Exception as exc:  # noqa: BLE001  the boundary: a third-party decoder's unforeseen error is one reject
        return Processed(task.relative, ok=False, reason="decode_error", detail=scrub(exc))


@contextlib.contextmanager
def worker_settings() -> Iterator[None]:
    """One torch thread and plain tensors (no MONAI metadata) while preprocessing; restored afterwards."""
    import monai.data
    import torch

    previous, threads = monai.data.get_track_meta(), torch.get_num_threads()
    monai.data.set_track_meta(False)  # plain tensors: 3x faster, and nothing here needs the metadata
    torch.set_num_threads(1)  # tiny tensors: threads only contend (10x slower on a loaded 2-core machine)
    try:
        yield
    finally:
        monai.data.set_track_meta(previous)
        torch.set_num_threads(threads)


def init_worker() -> None:
    """Process-pool initializer: the settings of :func:`worker_settings` for the worker's whole life."""
    import monai.data
    import torch

    monai.data.set_track_meta(False)
    torch.set_num_threads(1)


def _process(task: Task) -> Processed:
    try:
        data = Path(task.path).read_bytes()
    except OSError as exc:
        return Processed(task.relative, ok=False, reason="unreadable", detail=f"{type(exc).__name__}: {exc}")
    try:
        decoded = decode_any(Path(task.path), data, task.modalities)
    except Reject as reject:
        return Processed(task.relative, ok=False, reason=reject.reason, detail=reject.detail)
    pixels = decoded.pixels
    result = Processed(
        task.relative, ok=True, decoded=decoded, shape=tuple(pixels.shape),
        source_sha256=hashlib.sha256(data).hexdigest(),
        pixel_sha256=decoded.pixel_sha256,
    )
    result.image = to_cache_image(pixels, task)
    masks: dict[str, np.ndarray] = {}
    for kind, mask_path in sorted(task.masks.items()):
        try:
            mask = _read_mask(mask_path, kind)
        except (OSError, ValueError, SyntaxError) as exc:
            result.rejected_masks.append((mask_path, "unreadable_mask", scrub(exc)))
            continue
        if mask.shape != pixels.shape:
            result.rejected_masks.append(
                (mask_path, "mask_shape_mismatch", f"mask {mask.shape} vs image {tuple(pixels.shape)}")
            )
            continue
        masks[kind] = mask
    result.masks = to_cache_masks(masks, task)
    if task.counterfactual is not None:
        result.counterfactual = _process(task.counterfactual)
    decoded.pixels = np.empty((0, 0), dtype=np.float32)  # the parent needs the arrays above, not the raw pixels
    return result
