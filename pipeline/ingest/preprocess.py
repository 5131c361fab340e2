"""Worker side of ingest: decode one image (and its masks and counterfactual) into cache-ready arrays.

Runs in a process pool; everything here is a module-level function of picklable arguments. Intensities are scaled
to [0, 1] per image (as MONAI ``ScaleIntensity``), then the same spatial steps go to the image (area resize) and its
masks (nearest): optional centre crop -> square by padding / stretching / cropping (MONAI) -> resize to the cache
size, done in numpy exactly as MONAI ``Resize`` does it (area: block mean, else torch adaptive pooling; nearest: an
index map), because MONAI's per-call bookkeeping cost more than a 256 px image. With ``Task.cache_dir`` the worker
writes its arrays into its rows of the cache files itself (pwrite) and returns only the small record.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.ingest.cache_writer import MASK_ARRAY
from pipeline.ingest.dicom import Decoded, Reject, decode_any, scrub

_TRANSFORMS: dict[tuple, Any] = {}
# Pillow tries every registered format in turn without a list; masks are PNG (TIFF/BMP also accepted)
_MASK_FORMATS = ("PNG", "TIFF", "BMP")


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
    # Where the worker writes its arrays itself (pipeline/ingest/cache_writer.py layout): sending ~80 KB of arrays
    # back through the pool and copying them in the parent cost more than the resize. "" = return them instead.
    cache_dir: str = ""
    row: int = -1
    array_prefix: str = ""  # "counterfactual_" for a counterfactual's row


@dataclass
class Processed:
    relative: str
    ok: bool
    reason: str = ""
    detail: str = ""
    decoded: Decoded | None = None  # pixels dropped (set to None) before returning to the parent
    image: np.ndarray | None = None
    masks: dict[str, np.ndarray] = field(default_factory=dict)  # empty once stored in the cache
    mask_kinds: tuple[str, ...] = ()  # the masks that were usable (sorted), stored or not
    stored: bool = False  # image and masks written into the cache row ``Task.row``
    rejected_masks: list[tuple[str, str, str]] = field(default_factory=list)  # (path, reason, detail)
    source_sha256: str = ""
    pixel_sha256: str = ""
    shape: tuple[int, int] = (0, 0)
    counterfactual: Processed | None = None
    patient_tokens: tuple[str, ...] = ()  # the file's patient name parts / IDs: scrubbed from its path (memory only)


def _pad_crop(shape: tuple[int, int], aspect: str, crop_fraction: float) -> list:
    """The MONAI crop/pad steps before the resize for one input shape (none for a square image without a crop;
    cached: a cohort has few distinct shapes)."""
    from monai.transforms import CenterSpatialCrop, SpatialPad

    key = (shape, aspect, crop_fraction)
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
        if len(_TRANSFORMS) > 256:  # many distinct shapes: keep memory bounded
            _TRANSFORMS.clear()
        _TRANSFORMS[key] = steps
    return _TRANSFORMS[key]


def _apply(steps: list, array: np.ndarray) -> np.ndarray:
    # called one by one rather than through Compose: Compose's bookkeeping costs more than a 256 px resize
    for step in steps:
        array = step(array)
    return np.asarray(array)


def _resize_area(array: np.ndarray, size: int) -> np.ndarray:
    """MONAI ``Resize(mode="area")`` (torch adaptive average pooling) of (C, H, W); a block mean in numpy when the
    size divides the input: the same average as a sum of strided views (15x faster than ``reshape().mean()``, 5x
    faster than torch on a 256 px image)."""
    _, rows, cols = array.shape
    if rows % size == 0 and cols % size == 0 and (rows // size) * (cols // size) <= 64:
        fr, fc = rows // size, cols // size
        if fr == fc == 1:
            return array
        total = array[:, 0::fr, 0::fc].copy()
        for i in range(fr):
            for j in range(fc):
                if i or j:
                    total += array[:, i::fr, j::fc]
        total *= np.float32(1.0 / (fr * fc))
        return total
    import torch

    with torch.no_grad():
        return torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(np.ascontiguousarray(array)), size).numpy()


def _nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each output pixel as torch's ``interpolate(mode="nearest")`` (MONAI ``Resize`` nearest)
    picks it: floor(i * in / out) in float32, clamped."""
    scale = np.float32(n_in) / np.float32(n_out)
    return np.minimum(np.floor(np.arange(n_out, dtype=np.float32) * scale).astype(np.int64), n_in - 1)


@functools.lru_cache(maxsize=64)
def _nearest_plan(n_in: int, n_out: int) -> slice | np.ndarray:
    """:func:`_nearest_index` as a slice when it is a plain stride (256 -> 128: every second pixel), so that the
    pick is a view instead of a copy; the index array otherwise."""
    index = _nearest_index(n_in, n_out)
    step = int(index[1] - index[0]) if n_out > 1 else 1
    if index[0] == 0 and step >= 1 and np.array_equal(index, np.arange(n_out) * step):
        return slice(0, step * (n_out - 1) + 1, step)
    index.flags.writeable = False  # shared by every call with these sizes
    return index


def to_cache_image(
    pixels: np.ndarray, task: Task, pixel_range: tuple[np.float32, np.float32] | None = None, *, in_place: bool = False
) -> np.ndarray:
    """Per-image min-max to [0, 1] (MONAI ``ScaleIntensity``), crop/pad, area resize, float16. ``pixel_range``:
    the (min, max) of float32 ``pixels`` when the decoder already knows them. ``in_place``: scale inside ``pixels``
    (float32, the caller's to lose): a new 5-megapixel array costs more in page faults than the arithmetic."""
    low, high = pixel_range if pixel_range is not None else (pixels.min(), pixels.max())
    if high > low:  # one pass into a new array (or in place) instead of copy, subtract, divide
        into = {"out": pixels} if in_place and pixels.dtype == np.float32 else {"dtype": np.float32}
        scaled = np.subtract(pixels, low, **into)[None]
        scaled /= np.float32(high - low)
    else:  # ScaleIntensity's constant-image rule (check_pixels rejects these, a counterfactual could still be one)
        scaled = np.zeros((1, *pixels.shape), dtype=np.float32)
    rows, cols = pixels.shape
    if task.aspect == "pad" and task.crop_fraction >= 1.0 and rows != cols:
        out = _resize_area_padded(scaled, task.size)
    else:
        out = _resize_area(_apply(_pad_crop(pixels.shape, task.aspect, task.crop_fraction), scaled), task.size)
    return np.clip(out[0], 0.0, 1.0).astype(np.float16)


def _resize_area_padded(array: np.ndarray, size: int) -> np.ndarray:
    """MONAI ``SpatialPad`` (zeros, split as MONAI splits it) to a square, then ``Resize(mode="area")``, of (1, H, W),
    without building the padded square: area pooling is separable, so the long side (which needs no padding) is
    pooled first at full resolution and only the pooled array is padded. Equal to the two MONAI steps up to float32
    rounding (tested); a 2500 x 2048 image skips a 25 MB copy."""
    import torch

    _, rows, cols = array.shape
    side = max(rows, cols)
    first = (size, cols) if rows == side else (rows, size)
    with torch.no_grad():
        pooled = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(np.ascontiguousarray(array)), first).numpy()
    missing = [side - n for n in pooled.shape[1:]]
    padded = np.pad(pooled, [(0, 0)] + [(m // 2, m - m // 2) if n < side else (0, 0)
                                        for m, n in zip(missing, (rows, cols), strict=True)])
    return _resize_area(padded, size)


def _mask_values(mask: np.ndarray, kind: str) -> np.ndarray:
    """The values the cache keeps: 0/1 for lungs and lesions (any non-zero pixel is inside), the label codes of a
    shortcut mask. Pixel-wise, so it commutes with the nearest-neighbour pick."""
    if kind == "shortcut":
        return mask.astype(np.uint8)
    return (mask > 0).view(np.uint8)


def to_cache_masks(masks: dict[str, np.ndarray], task: Task) -> dict[str, np.ndarray]:
    """All masks of one image (each as read, all of one shape): cache values, crop/pad, nearest-neighbour resize.
    Without crop/pad the resize picks pixels first and maps the values of the picked quarter only."""
    if not masks:
        return {}
    kinds = sorted(masks)
    shape = masks[kinds[0]].shape
    steps = _pad_crop(shape, task.aspect, task.crop_fraction)
    if steps:  # stacked as channels: one pass of MONAI's crop/pad for all of them
        stacked = np.stack([_mask_values(masks[k], k) for k in kinds]).astype(np.float32)
        stacked = _apply(steps, stacked).round().astype(np.uint8)
        masks, shape = dict(zip(kinds, stacked, strict=True)), stacked.shape[1:]
    rows, cols = _nearest_plan(shape[0], task.size), _nearest_plan(shape[1], task.size)
    return {kind: np.ascontiguousarray(_mask_values(masks[kind][rows][:, cols], kind)) for kind in kinds}


def _read_mask(path: str, orientation: int = 1) -> np.ndarray:
    """The mask as stored (first channel of a colour file); :func:`_mask_values` maps it later. In its image's grid:
    the mask's own EXIF orientation applied, else the one applied to its image (``orientation``, 1 = none)."""
    from PIL import Image, ImageOps

    from pipeline.ingest.dicom import EXIF_ORIENTATION

    with Image.open(path, formats=_MASK_FORMATS) as image:
        own = image.getexif().get(EXIF_ORIENTATION, 1) or 1
        if own != 1:
            arr = np.asarray(ImageOps.exif_transpose(image))
        elif orientation in _transpositions():
            arr = np.asarray(image.transpose(_transpositions()[orientation]))
        else:
            arr = np.asarray(image)
    return arr[..., 0] if arr.ndim == 3 else arr


@functools.cache
def _transpositions() -> dict[int, Any]:
    """EXIF orientation -> Pillow transposition, as ``ImageOps.exif_transpose`` maps them (built on first use: Pillow
    is not imported with this module)."""
    from PIL import Image

    t = Image.Transpose
    return {2: t.FLIP_LEFT_RIGHT, 3: t.ROTATE_180, 4: t.FLIP_TOP_BOTTOM, 5: t.TRANSPOSE, 6: t.ROTATE_270,
            7: t.TRANSVERSE, 8: t.ROTATE_90}


_OPEN_ROWS: dict[str, tuple[int, int, int, np.dtype, tuple[int, ...]]] = {}


def _row_file(cache_dir: str, name: str) -> tuple[int, int, int, np.dtype, tuple[int, ...]]:
    """(fd, offset of row 0, bytes per row, dtype, row shape) of a cache ``.npy`` file, opened once per process."""
    path = os.path.join(cache_dir, f"{name}.npy")
    entry = _OPEN_ROWS.get(path)
    if entry is None:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read_header(handle)
            offset = handle.tell()
        row_shape = tuple(shape[1:])
        entry = (os.open(path, os.O_WRONLY), offset, int(np.prod(row_shape)) * dtype.itemsize, dtype, row_shape)
        _OPEN_ROWS[path] = entry
    return entry


def _write_row(cache_dir: str, name: str, row: int, array: np.ndarray) -> None:
    """One row of a cache array written with pwrite: the parent reads it through its memory map of the same file
    (one page cache), and a worker's own fresh mapping would take a page fault for every 4 KB it writes."""
    fd, offset, row_bytes, dtype, row_shape = _row_file(cache_dir, name)
    data = np.ascontiguousarray(array, dtype=dtype)
    if data.shape != row_shape:
        raise ValueError(f"cache row for {name} must have shape {row_shape}, got {data.shape}")
    if os.pwrite(fd, data, offset + row * row_bytes) != row_bytes:
        raise OSError(f"short write into {name}.npy row {row}")


def release_cache_files() -> None:
    """Close the cache files a serial ingest opened here (the parent compacts and truncates them next)."""
    for fd, *_ in _OPEN_ROWS.values():
        os.close(fd)
    _OPEN_ROWS.clear()


def _store(task: Task, result: Processed) -> None:
    """Write the image and its masks into row ``task.row`` of the cache files."""
    prefix = task.array_prefix
    _write_row(task.cache_dir, f"{prefix}images", task.row, result.image)
    for kind, mask in result.masks.items():
        if prefix and kind == "lesion":  # counterfactuals keep lung and shortcut masks only
            continue
        _write_row(task.cache_dir, f"{prefix}{MASK_ARRAY[kind]}", task.row, mask)
    result.image, result.masks, result.stored = None, {}, True


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
        return Processed(task.relative, ok=False, reason=reject.reason, detail=reject.detail,
                         patient_tokens=reject.patient_tokens)
    pixels = decoded.pixels
    result = Processed(
        task.relative, ok=True, decoded=decoded, shape=tuple(pixels.shape),
        source_sha256=hashlib.sha256(data).hexdigest(),
        pixel_sha256=decoded.pixel_sha256, patient_tokens=decoded.patient_tokens,
    )
    result.image = to_cache_image(pixels, task, decoded.pixel_range, in_place=True)  # pixels: not used after
    masks: dict[str, np.ndarray] = {}
    for kind, mask_path in sorted(task.masks.items()):
        try:
            mask = _read_mask(mask_path, decoded.exif_orientation)
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
    result.mask_kinds = tuple(sorted(result.masks))
    if task.cache_dir:
        _store(task, result)
    if task.counterfactual is not None:
        result.counterfactual = _process(task.counterfactual)
    # the parent needs the arrays above, not the pixels; numpy objects also cost more to pickle than the rest
    decoded.pixels, decoded.pixel_range = None, None
    return result
