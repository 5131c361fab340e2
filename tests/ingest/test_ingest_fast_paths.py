"""The ingest worker gives what the libraries give: pydicom's ``pixel_array`` (which decodes every file now), MONAI ``ScaleIntensity`` + ``Resize`` for the cache image and its masks."""

from pathlib import Path

import numpy as np
import pydicom
import pytest

from pipeline.ingest.dicom import decode_any, pixel_hash
from pipeline.ingest.preprocess import Task, to_cache_image, to_cache_masks, worker_settings
from tests.helpers.ingest_factory import write_cxr


def _task(size: int, aspect: str = "pad", crop_fraction: float = 1.0) -> Task:
    return Task(path="", relative="", masks={}, size=size, aspect=aspect, crop_fraction=crop_fraction, modalities=None)


@pytest.mark.parametrize("bits_stored", [8, 12, 16])
def test_decode_dicom_uncompressed_pixels_hash_like_pydicom_pixel_array(tmp_path, bits_stored):
    path = tmp_path / "x.dcm"
    write_cxr(path, seed=5, bits_stored=bits_stored)
    decoded = decode_any(path, path.read_bytes(), None)
    assert decoded.pixel_sha256 == pixel_hash(pydicom.dcmread(path).pixel_array)


@pytest.mark.parametrize("bits_stored", [8, 10, 12, 16])
def test_decode_dicom_rle_pixels_hash_like_pydicom_pixel_array(tmp_path, bits_stored):
    path = tmp_path / "x.dcm"
    write_cxr(path, seed=6, bits_stored=bits_stored, rle=True, rows=37, cols=29)
    ds = pydicom.dcmread(path)
    assert ds.file_meta.TransferSyntaxUID.name == "RLE Lossless"
    decoded = decode_any(path, path.read_bytes(), None)
    assert decoded.pixel_sha256 == pixel_hash(ds.pixel_array)


def test_decode_dicom_bits_above_bits_stored_decode_like_pydicom(tmp_path):
    """Garbage above BitsStored (overlay bits, a careless writer): the plain buffer view is not used."""
    path = tmp_path / "x.dcm"
    write_cxr(path, seed=2, bits_stored=12)
    ds = pydicom.dcmread(path)
    noisy = np.frombuffer(ds.PixelData, dtype="<u2") | np.uint16(0x8000)
    ds.PixelData = noisy.astype("<u2").tobytes()
    ds.save_as(path)
    decoded = decode_any(path, path.read_bytes(), None)
    reference = pydicom.dcmread(path).pixel_array
    assert decoded.pixel_sha256 == pixel_hash(reference)


def _monai_image(pixels: np.ndarray, task: Task) -> np.ndarray:
    from monai.transforms import CenterSpatialCrop, Resize, ScaleIntensity, SpatialPad

    array = ScaleIntensity(minv=0.0, maxv=1.0)(pixels[None].astype(np.float32))
    rows, cols = pixels.shape
    if task.crop_fraction < 1.0:
        rows, cols = int(round(rows * task.crop_fraction)), int(round(cols * task.crop_fraction))
        array = CenterSpatialCrop((rows, cols))(array)
    if task.aspect == "pad" and rows != cols:
        array = SpatialPad((max(rows, cols),) * 2, mode="constant")(array)
    elif task.aspect == "crop" and rows != cols:
        array = CenterSpatialCrop((min(rows, cols),) * 2)(array)
    return np.asarray(Resize((task.size, task.size), mode="area")(array))[0]


@pytest.mark.parametrize(("shape", "size", "aspect", "crop"), [
    ((64, 64), 32, "pad", 1.0), ((64, 64), 64, "pad", 1.0), ((60, 48), 24, "pad", 1.0), ((48, 60), 20, "crop", 1.0),
    ((50, 50), 21, "stretch", 0.9), ((96, 64), 16, "stretch", 1.0),
])
def test_to_cache_image_matches_monai_scale_and_area_resize(shape, size, aspect, crop):
    pixels = np.random.default_rng(0).normal(1000.0, 300.0, shape).astype(np.float32)
    task = _task(size, aspect, crop)
    with worker_settings():
        ours, reference = to_cache_image(pixels, task), _monai_image(pixels, task)
    assert ours.dtype == np.float16 and ours.shape == (size, size)
    np.testing.assert_allclose(ours.astype(np.float32), reference, atol=1e-3)


@pytest.mark.parametrize(("shape", "size", "aspect"), [
    ((64, 64), 32, "pad"), ((60, 48), 25, "pad"), ((48, 60), 20, "crop"), ((37, 53), 50, "stretch"),
])
def test_to_cache_masks_match_monai_nearest_resize(shape, size, aspect):
    from monai.transforms import Resize

    rng = np.random.default_rng(1)
    masks = {"lung": (rng.random(shape) > 0.5).astype(np.uint8), "shortcut": rng.integers(0, 5, shape).astype(np.uint8)}
    task = _task(size, aspect)
    with worker_settings():
        ours = to_cache_masks(masks, task)
        for kind, mask in masks.items():
            square = mask.astype(np.float32)[None]
            if aspect != "stretch" and shape[0] != shape[1]:
                side = max(shape) if aspect == "pad" else min(shape)
                from monai.transforms import CenterSpatialCrop, SpatialPad

                step = SpatialPad((side, side), mode="constant") if aspect == "pad" else CenterSpatialCrop((side, side))
                square = step(square)
            reference = np.asarray(Resize((size, size), mode="nearest")(square))[0].round().astype(np.uint8)
            assert ours[kind].dtype == np.uint8
            np.testing.assert_array_equal(ours[kind], reference)


@pytest.mark.parametrize(("shape", "size"), [((64, 64), 32), ((60, 48), 25)])
def test_to_cache_masks_map_stored_values_binary_to_0_1_and_keep_shortcut_codes(shape, size):
    """Masks arrive as stored: 0/255 8-bit, 1-bit (bool), 16-bit; lungs and lesions become 0/1, codes stay."""
    rng = np.random.default_rng(2)
    inside = rng.random(shape) > 0.5
    codes = rng.integers(0, 6, shape).astype(np.uint8)
    stored = {"lung": inside.astype(np.uint8) * 255, "lesion": inside.astype(np.uint16) * 300, "shortcut": codes}
    as_values = {"lung": inside.astype(np.uint8), "lesion": inside.astype(np.uint8), "shortcut": codes}
    task = _task(size)
    with worker_settings():
        ours, reference = to_cache_masks(stored, task), to_cache_masks(as_values, task)
        from_bool = to_cache_masks({"lung": inside}, task)
    for kind in stored:
        assert ours[kind].dtype == np.uint8 and ours[kind].flags.c_contiguous
        np.testing.assert_array_equal(ours[kind], reference[kind])
    np.testing.assert_array_equal(from_bool["lung"], reference["lung"])
    assert set(np.unique(ours["lung"])) <= {0, 1}


def test_process_writes_rows_into_the_cache_arrays(tmp_path):
    from pipeline.ingest.cache_writer import CacheWriter
    from pipeline.ingest.preprocess import process, release_cache_files

    paths = [tmp_path / f"x{i}.dcm" for i in range(3)]
    for i, path in enumerate(paths):
        write_cxr(path, seed=i)
    writer = CacheWriter(tmp_path / "out", capacity=3, size=16)
    tasks = [Task(path=str(p), relative=p.name, masks={}, size=16, aspect="pad", crop_fraction=1.0, modalities=None,
                  cache_dir=str(writer.root), row=i) for i, p in enumerate(paths)]
    try:
        with worker_settings():
            results = [process(t) for t in reversed(tasks)]  # any order: each task owns its row
    finally:
        release_cache_files()
    assert all(r.ok and r.stored and r.image is None for r in results)
    for task in tasks:
        with worker_settings():
            expected = to_cache_image(decode_any(Path(task.path), Path(task.path).read_bytes(), None).pixels, task)
        np.testing.assert_array_equal(writer.arrays["images"][task.row], expected)


@pytest.mark.parametrize(("shape", "size"), [((251, 204), 22), ((204, 251), 22), ((300, 200), 100), ((64, 63), 64)])
def test_padded_area_resize_equals_monai_pad_then_resize(shape, size):
    """The separable pad + area resize (the long side pooled before padding) equals MONAI's two steps in float32."""
    from monai.transforms import Resize, SpatialPad

    from pipeline.ingest.preprocess import _resize_area_padded

    array = np.random.default_rng(3).random((1, *shape), dtype=np.float32)
    with worker_settings():
        reference = np.asarray(Resize((size, size), mode="area")(SpatialPad((max(shape),) * 2)(array)))
        ours = _resize_area_padded(array, size)
    assert ours.shape == (1, size, size)
    np.testing.assert_allclose(ours, reference, rtol=0, atol=2e-6)
