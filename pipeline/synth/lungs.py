"""Real lung-field shapes: torchxrayvision's packaged v7labs lung masks (517 traced on COVID-era radiographs).

Each mask is normalised once: thresholded, split into its two largest connected components (right and left lung),
cropped to the bounding box of the pair and resized to a fixed square, kept soft (anti-aliased) so that warping it
into an image gives smooth lung edges. The library is built once per machine and cached as a small ``.npz`` keyed by
the zip's hash (building it decodes ~500 images, ~20 s; loading it takes milliseconds).
"""

from __future__ import annotations

import functools
import io
import os
import zipfile
from pathlib import Path

import numpy as np

from pipeline.errors import DataError

LIBRARY_SIZE = 128  # rows = cols of a normalised lung-pair mask
LIBRARY_VERSION = 1
ZIP_NAME = "semantic_masks_v7labs_lungs.zip"


def masks_zip() -> Path:
    import importlib.util

    spec = importlib.util.find_spec("torchxrayvision")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("synth: torchxrayvision must be installed (its lung masks shape the synthetic lungs).")
    path = Path(list(spec.submodule_search_locations)[0]) / "data" / ZIP_NAME
    if not path.is_file():
        raise DataError(f"synth: {path} must exist, got nothing. Reinstall torchxrayvision==1.5.7.")
    return path


def cache_dir() -> Path:
    root = os.environ.get("CXR_FISHR_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "cxr-fishr"
    )
    return Path(root)


def normalise_mask(mask: np.ndarray, size: int = LIBRARY_SIZE) -> np.ndarray | None:
    """Binary mask (H, W) -> soft uint8 (size, size) of the lung pair's bounding box, or None if not two lungs."""
    from PIL import Image
    from scipy import ndimage as ndi

    labels, count = ndi.label(mask)
    if count < 2:
        return None
    areas = ndi.sum_labels(mask, labels, index=np.arange(1, count + 1))
    order = np.argsort(areas)[::-1]
    big, second = areas[order[0]], areas[order[1]]
    if second < 0.3 * big or big + second < 0.05 * mask.size:
        return None
    pair = (labels == order[0] + 1) | (labels == order[1] + 1)
    centres = ndi.center_of_mass(pair, labels, [order[0] + 1, order[1] + 1])
    if abs(centres[0][1] - centres[1][1]) < 0.2 * mask.shape[1]:
        return None  # not a right/left pair side by side
    pair = ndi.binary_fill_holes(pair)
    rows, cols = np.nonzero(pair)
    crop = pair[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    image = Image.fromarray((crop * 255).astype(np.uint8)).resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(image, dtype=np.uint8)


def build_library(zip_path: Path, size: int = LIBRARY_SIZE) -> tuple[np.ndarray, list[str]]:
    from PIL import Image

    shapes, names = [], []
    with zipfile.ZipFile(zip_path) as archive:
        for name in sorted(n for n in archive.namelist() if not n.endswith("/")):
            image = Image.open(io.BytesIO(archive.read(name)))
            image.draft("L", (384, 384))  # JPEG: decode at reduced scale (the masks are smooth)
            image = image.convert("L")
            scale = 384 / max(image.size)
            if scale < 1:
                image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
            shape = normalise_mask(np.asarray(image) > 127, size)
            if shape is not None:
                shapes.append(shape)
                names.append(name.rsplit("/", 1)[-1])
    if len(shapes) < 50:
        raise DataError(f"synth: the lung mask library must hold >= 50 usable masks, got {len(shapes)} ({zip_path}).")
    return np.stack(shapes), names


@functools.lru_cache(maxsize=1)
def lung_library() -> np.ndarray:
    """(N, LIBRARY_SIZE, LIBRARY_SIZE) float32 in [0, 1]: soft lung-pair masks, image left = patient right."""
    from pipeline.stage import atomic_path, sha256_file

    zip_path = masks_zip()
    digest = sha256_file(zip_path)[:16]
    path = cache_dir() / f"lung_library_v{LIBRARY_VERSION}_{LIBRARY_SIZE}_{digest}.npz"
    if path.is_file():
        with np.load(path) as data:
            shapes = data["shapes"]
    else:
        shapes, names = build_library(zip_path)
        try:
            with atomic_path(path) as tmp:
                with open(tmp, "wb") as handle:
                    np.savez_compressed(handle, shapes=shapes, names=np.array(names))
        except OSError:
            pass  # a read-only home only costs a rebuild next time
    return shapes.astype(np.float32) / 255.0


def warp_lungs(shape: np.ndarray, matrix: np.ndarray, offset: np.ndarray, size: int) -> np.ndarray:
    """Warp a library shape into the image: output pixel (r, c) reads shape at ``matrix @ (r, c) + offset``."""
    from scipy import ndimage as ndi

    return ndi.affine_transform(shape, matrix, offset=offset, output_shape=(size, size), order=1, cval=0.0)
