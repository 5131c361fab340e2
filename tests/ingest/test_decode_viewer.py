"""Decoding gives what a viewer shows, checked pixel by pixel against the libraries' own conversions (Pillow's
``convert``/``alpha_composite``, pydicom's ``pixel_array``/``apply_color_lut``/``apply_modality_lut``), or a reject
that names the mode; odd optional headers count as absent; reject details keep their words but no patient data."""

from pathlib import Path

import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.pixels import apply_color_lut, apply_modality_lut

from pipeline.ingest.dicom import Reject, decode_any, pixel_hash, scrub
from pipeline.ingest.preprocess import Task, to_cache_image, worker_settings
from tests.helpers.ingest_factory import FAKE_ID_PREFIX, FAKE_NAME, write_cxr


def _decode(path: Path):
    return decode_any(path, path.read_bytes(), None)


def _gradient(rows: int = 32, cols: int = 32) -> np.ndarray:
    return (np.add.outer(np.arange(rows) * 5, np.arange(cols) * 3) % 256).astype(np.uint8)


def _luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma in float64: the weights of Pillow's convert("L"), without its rounding."""
    rgb = rgb.astype(np.float64)
    return rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114


# ---- PNG / JPEG / TIFF: Pillow's own conversions -------------------------------------------------------------


def test_palette_png_is_read_through_its_palette_with_a_note(tmp_path):
    """The issue's repro: palette index i shows grey 255 - i; the cache must correlate +1 with what is shown."""
    indices = _gradient()
    image = Image.fromarray(indices, "P")
    image.putpalette([c for i in range(256) for c in (255 - i,) * 3])
    path = tmp_path / "p.png"
    image.save(path)
    decoded = _decode(path)
    with Image.open(path) as reopened:
        shown = np.asarray(reopened.convert("L"))
    np.testing.assert_array_equal(decoded.pixels, shown)
    np.testing.assert_array_equal(decoded.pixels, 255 - indices)
    assert any("P converted to grey through its palette" in n for n in decoded.notes)
    with worker_settings():
        cache = to_cache_image(decoded.pixels, Task(path="", relative="", masks={}, size=32, aspect="pad",
                                                    crop_fraction=1.0, modalities=None), decoded.pixel_range)
    assert np.corrcoef(cache.ravel().astype(float), shown.ravel())[0, 1] > 0.999


def _save(tmp_path: Path, mode: str, suffix: str = ".png", alpha: int | None = None) -> Path:
    grey = _gradient()
    rgb = np.stack([grey, 255 - grey, (grey // 2 + 60).astype(np.uint8)], axis=-1)
    if mode in ("L", "1"):
        image = Image.fromarray(grey).convert(mode)
    elif mode == "I;16":
        image = Image.fromarray(grey.astype(np.uint16) * 257)
    elif mode in ("I", "F"):
        image = Image.fromarray(grey.astype(np.int32) * 1000 if mode == "I" else grey.astype(np.float32) / 7)
    else:
        image = Image.fromarray(rgb, "RGB").convert(mode)
    if alpha is not None:
        bands = np.asarray(image.convert("RGBA")).copy()
        bands[:8, :, 3] = alpha  # a translucent (or opaque) top band
        image = Image.fromarray(bands, "RGBA").convert(mode)
    path = tmp_path / f"x{suffix}"
    image.save(path)
    return path


@pytest.mark.parametrize(("mode", "suffix", "alpha"), [
    ("1", ".png", None), ("L", ".png", None), ("LA", ".png", 255), ("LA", ".png", 40), ("P", ".png", None),
    ("RGB", ".png", None), ("RGBA", ".png", 255), ("RGBA", ".png", 0), ("RGBA", ".png", 128), ("I;16", ".png", None),
    ("I", ".tif", None), ("F", ".tif", None), ("CMYK", ".jpg", None), ("CMYK", ".tif", None), ("YCbCr", ".jpg", None),
    ("RGB", ".jpg", None), ("L", ".bmp", None),
])
def test_pillow_modes_decode_as_pillow_converts_them(tmp_path, mode, suffix, alpha):
    path = _save(tmp_path, mode, suffix, alpha)
    decoded = _decode(path)
    with Image.open(path) as image:
        stored_mode = image.mode
        if stored_mode in ("L", "I", "F", "I;16"):
            expected = np.asarray(image)
        elif "A" in stored_mode and np.asarray(image)[..., -1].min() < 255:
            black = Image.new("RGBA", image.size, (0, 0, 0, 255))
            expected = np.asarray(Image.alpha_composite(black, image.convert("RGBA")).convert("L"))
            assert any("transparency composited over black" in n for n in decoded.notes)
        else:
            expected = np.asarray(image.convert("L"))
            assert any(f"{stored_mode} converted to grey" in n for n in decoded.notes)
    assert decoded.pixels.dtype == np.float32 and decoded.pixels.shape == (32, 32)
    assert not any("EXIF" in n for n in decoded.notes)
    np.testing.assert_array_equal(decoded.pixels, expected.astype(np.float32))


def test_palette_png_with_transparency_is_composited_over_black(tmp_path):
    indices = _gradient()
    image = Image.fromarray(indices, "P")
    image.putpalette([c for i in range(256) for c in (i, i, 255 - i)])
    image.info["transparency"] = int(indices[0, 0])  # one palette entry is transparent
    path = tmp_path / "pt.png"
    image.save(path, transparency=int(indices[0, 0]))
    decoded = _decode(path)
    with Image.open(path) as reopened:
        assert "transparency" in reopened.info
        black = Image.new("RGBA", reopened.size, (0, 0, 0, 255))
        expected = np.asarray(Image.alpha_composite(black, reopened.convert("RGBA")).convert("L"))
    np.testing.assert_array_equal(decoded.pixels, expected)
    assert decoded.pixels[indices == indices[0, 0]].max() == 0


def test_image_mode_without_a_grey_conversion_is_rejected_with_the_mode_named(tmp_path):
    path = tmp_path / "lab.tif"
    Image.fromarray(np.stack([_gradient()] * 3, axis=-1), "RGB").convert("LAB").save(path)
    with Image.open(path) as image:
        assert image.mode == "LAB"
    with pytest.raises(Reject) as err:
        _decode(path)
    assert err.value.reason == "unsupported_image_mode" and "'LAB'" in err.value.detail


def test_exif_orientation_is_applied_like_a_viewer(tmp_path):
    from PIL import ImageOps

    grey = _gradient(24, 32)
    image = Image.fromarray(grey)
    exif = image.getexif()
    exif[0x0112] = 6  # rotated 90 degrees
    path = tmp_path / "o.jpg"
    image.save(path, exif=exif, quality=95)
    decoded = _decode(path)
    with Image.open(path) as reopened:
        expected = np.asarray(ImageOps.exif_transpose(reopened))
    assert decoded.pixels.shape == (32, 24) and "EXIF orientation 6 applied" in decoded.notes
    np.testing.assert_array_equal(decoded.pixels, expected)


# ---- DICOM: pixel padding, palette and colour ------------------------------------------------------------------


def _signed_dx_with_border(path: Path, *, padding: int, limit: int | None = None, vr: str = "SS",
                           photometric: str = "MONOCHROME2") -> tuple[np.ndarray, np.ndarray]:
    """The issue's repro: signed DX, values 300-1700, a 5-pixel border of padding, no window."""
    write_cxr(path, seed=4)
    ds = pydicom.dcmread(path)
    rng = np.random.default_rng(0)
    values = rng.integers(300, 1701, (40, 36)).astype(np.int16)
    border = np.zeros(values.shape, bool)
    border[:5], border[-5:], border[:, :5], border[:, -5:] = True, True, True, True
    low, high = (padding, padding) if limit is None else sorted((padding, limit))
    values[border] = rng.integers(low, high + 1, int(border.sum()))
    ds.PixelRepresentation, ds.BitsAllocated, ds.BitsStored, ds.HighBit = 1, 16, 16, 15
    ds.PhotometricInterpretation = photometric
    ds.PixelData = values.tobytes()
    for keyword in ("WindowCenter", "WindowWidth"):
        if keyword in ds:
            del ds[keyword]
    ds.add_new(0x00280120, vr, padding if vr == "SS" else padding & 0xFFFF)
    if limit is not None:
        ds.add_new(0x00280121, vr, limit if vr == "SS" else limit & 0xFFFF)
    ds.save_as(path)
    return values, border


@pytest.mark.parametrize(("padding", "limit", "vr", "photometric"), [
    (-1000, None, "SS", "MONOCHROME2"), (-1000, -900, "SS", "MONOCHROME2"), (-1000, None, "US", "MONOCHROME2"),
    (3000, 2500, "SS", "MONOCHROME1"),
])
def test_pixel_padding_is_excluded_from_the_range_and_set_to_background(tmp_path, padding, limit, vr, photometric):
    path = tmp_path / "pad.dcm"
    stored, border = _signed_dx_with_border(path, padding=padding, limit=limit, vr=vr, photometric=photometric)
    ds = pydicom.dcmread(path)
    np.testing.assert_array_equal(ds.pixel_array, stored)
    shown = apply_modality_lut(ds.pixel_array, ds).astype(np.float64)  # pydicom's own Modality LUT
    if photometric == "MONOCHROME1":
        shown = -shown
    anatomy = shown[~border]
    expected = np.where(border, 0.0, (shown - anatomy.min()) / (anatomy.max() - anatomy.min()))
    decoded = _decode(path)
    low, high = (float(v) for v in decoded.pixel_range)
    np.testing.assert_allclose((decoded.pixels - low) / (high - low), expected, atol=1e-6)
    assert any("pixel padding" in n for n in decoded.notes)
    with worker_settings():
        cache = to_cache_image(decoded.pixels, Task(path="", relative="", masks={}, size=40, aspect="pad",
                                                    crop_fraction=1.0, modalities=None), decoded.pixel_range)
    rows, cols = np.nonzero(~border)
    assert cache[:4].max() == 0  # padded rows (top) are background ...
    inner = cache[4 + rows.min() - 5:, 2:-2]
    assert inner.max() >= 0.99  # ... and the anatomy spans the whole grey range


def test_palette_color_dicom_is_converted_through_pydicom_apply_color_lut(tmp_path):
    path = tmp_path / "pal.dcm"
    write_cxr(path, seed=1, bits_stored=8)
    ds = pydicom.dcmread(path)
    ds.PhotometricInterpretation = "PALETTE COLOR"
    entries = np.arange(256, dtype=np.uint16)
    tables = {"Red": entries * 256, "Green": (255 - entries) * 256, "Blue": (entries // 2) * 256}
    for i, (colour, table) in enumerate(tables.items()):
        ds.add_new(0x00281101 + i, "US", [256, 0, 16])  # the Red/Green/Blue descriptors (VR "US or SS")
        setattr(ds, f"{colour}PaletteColorLookupTableData", table.astype("<u2").tobytes())
    for keyword in ("RescaleSlope", "RescaleIntercept"):
        del ds[keyword]
    ds.save_as(path)
    reference = pydicom.dcmread(path)
    expected = _luma(apply_color_lut(reference.pixel_array, reference))
    decoded = _decode(path)
    np.testing.assert_allclose(decoded.pixels, expected, rtol=1e-6, atol=1e-6)
    assert any("PALETTE COLOR" in n for n in decoded.notes)


@pytest.mark.parametrize("photometric", ["RGB", "YBR_FULL"])
def test_colour_dicom_is_grey_of_what_pydicom_shows(tmp_path, photometric):
    from pydicom.pixels import convert_color_space

    path = tmp_path / "c.dcm"
    write_cxr(path, seed=2, rgb=True, modality="OT")
    ds = pydicom.dcmread(path)
    rgb = np.stack([_gradient(40, 36), 255 - _gradient(40, 36), _gradient(40, 36) // 3], axis=-1).astype(np.uint8)
    stored = rgb if photometric == "RGB" else convert_color_space(rgb, "RGB", "YBR_FULL")
    ds.PhotometricInterpretation, ds.PixelData = photometric, stored.tobytes()
    ds.save_as(path)
    shown = pydicom.dcmread(path).pixel_array  # pydicom converts YBR_FULL to RGB
    decoded = _decode(path)
    np.testing.assert_allclose(decoded.pixels, _luma(shown), rtol=1e-6, atol=1e-4)
    if photometric == "RGB":  # and within Pillow's rounding of the same conversion
        pillow = np.asarray(Image.fromarray(shown, "RGB").convert("L")).astype(np.float32)
        assert np.abs(decoded.pixels - pillow).max() <= 0.5 + 1e-3
    assert any("grey" in n for n in decoded.notes)


def _ybr_422(ybr: np.ndarray) -> bytes:
    """Native YBR_FULL_422: per pair of pixels Y0 Y1 Cb Cr (the pair's chroma averaged)."""
    pairs = ybr.reshape(ybr.shape[0], -1, 2, 3).astype(np.uint16)
    chroma = (pairs[:, :, :, 1:].sum(axis=2) + 1) // 2
    return np.concatenate([pairs[:, :, :, 0], chroma], axis=-1).astype(np.uint8).tobytes()


@pytest.mark.parametrize("encoding", ["native", "jpeg_baseline"])
def test_ybr_full_422_dicom_is_grey_of_what_pydicom_shows(tmp_path, encoding):
    import io

    from pydicom.encaps import encapsulate
    from pydicom.pixels import convert_color_space
    from pydicom.uid import JPEGBaseline8Bit

    path = tmp_path / "ybr.dcm"
    write_cxr(path, seed=2, rgb=True, modality="OT")
    ds = pydicom.dcmread(path)
    rgb = np.stack([_gradient(40, 36), 255 - _gradient(40, 36), _gradient(40, 36) // 3], axis=-1).astype(np.uint8)
    ds.PhotometricInterpretation = "YBR_FULL_422"
    if encoding == "native":
        ds.PixelData = _ybr_422(convert_color_space(rgb, "RGB", "YBR_FULL"))
    else:  # what most colour JPEG DICOMs are: baseline JPEG, YCbCr 4:2:x inside
        buffer = io.BytesIO()
        Image.fromarray(rgb, "RGB").save(buffer, format="JPEG", quality=90)
        ds.PixelData = encapsulate([buffer.getvalue()])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    ds.save_as(path)
    shown = pydicom.dcmread(path).pixel_array  # pydicom's own conversion to RGB
    decoded = _decode(path)
    np.testing.assert_allclose(decoded.pixels, _luma(shown), rtol=1e-6, atol=1e-4)
    assert np.corrcoef(decoded.pixels.ravel(), _luma(rgb).ravel())[0, 1] > 0.99
    assert any("YBR_FULL_422" in n and "grey" in n for n in decoded.notes)


def test_photometric_without_a_conversion_is_rejected_with_its_name(tmp_path):
    path = tmp_path / "hsv.dcm"
    write_cxr(path, seed=2, rgb=True, modality="OT")
    ds = pydicom.dcmread(path)
    ds.PhotometricInterpretation = "HSV"  # retired; no viewer conversion
    ds.save_as(path)
    with pytest.raises(Reject) as err:
        _decode(path)
    assert err.value.reason == "unsupported_photometric" and "'HSV'" in err.value.detail


# ---- odd headers: present but empty or malformed = absent ------------------------------------------------------

PLACEHOLDER = "123.4567"  # 8 bytes: replaced in the file by a malformed value of the same length


def _odd(path: Path, keyword: str, raw: bytes | None, window: bool = True) -> None:
    """A file whose ``keyword`` is empty (raw None) or holds ``raw`` (8 bytes, written over a placeholder)."""
    write_cxr(path, seed=7, slope=1.0, intercept=0.0, window=(2000.0, 3000.0) if window else None)
    ds = pydicom.dcmread(path)
    vr = pydicom.datadict.dictionary_VR(keyword)
    if keyword in ("VOILUTSequence", "ModalityLUTSequence"):
        setattr(ds, keyword, pydicom.Sequence([]))
    else:
        ds.add_new(pydicom.datadict.tag_for_keyword(keyword), vr.split(" or ")[0],
                   None if raw is None else PLACEHOLDER)
    ds.save_as(path)
    if raw is not None:
        data = path.read_bytes()
        assert data.count(PLACEHOLDER.encode()) == 1
        path.write_bytes(data.replace(PLACEHOLDER.encode(), raw))


def _without(path: Path, keyword: str, out: Path) -> Path:
    ds = pydicom.dcmread(path)
    if keyword == "BitsStored":
        ds.BitsStored = ds.BitsAllocated
    elif keyword in ds:
        del ds[keyword]
    ds.save_as(out)
    return out


@pytest.mark.parametrize(("keyword", "raw"), [
    ("RescaleSlope", None), ("RescaleIntercept", b"abc\\def "), ("WindowCenter", None), ("WindowWidth", b"nan     "),
    ("PixelSpacing", None), ("ImagerPixelSpacing", b"0.5\\x   "), ("PixelPaddingValue", None),
    ("VOILUTSequence", None), ("ModalityLUTSequence", None), ("BitsStored", None), ("VOILUTFunction", b"CURVY   "),
])
@pytest.mark.filterwarnings("ignore:Invalid value for VR CS")  # the placeholder written before the byte patch
def test_empty_or_malformed_optional_tag_is_treated_as_absent_and_noted(tmp_path, keyword, raw):
    path = tmp_path / "odd.dcm"
    _odd(path, keyword, raw)
    decoded = _decode(path)
    assert any(n.startswith(keyword) for n in decoded.notes), decoded.notes
    reference = _decode(_without(path, keyword, tmp_path / "absent.dcm"))
    np.testing.assert_array_equal(decoded.pixels, reference.pixels)
    assert decoded.spacing_mm == reference.spacing_mm or np.isnan(reference.spacing_mm)


@pytest.mark.parametrize(("keyword", "rgb", "default"), [
    ("PixelRepresentation", False, 0), ("SamplesPerPixel", False, 1), ("PhotometricInterpretation", False, "MONOCHROME2"),
    ("PlanarConfiguration", True, 0),
])
def test_empty_required_image_element_gets_the_value_a_viewer_assumes(tmp_path, keyword, rgb, default):
    path = tmp_path / "empty.dcm"
    write_cxr(path, seed=8, rgb=rgb, modality="OT")
    ds = pydicom.dcmread(path)
    setattr(ds, keyword, default)
    ds.save_as(tmp_path / "reference.dcm")
    ds.add_new(pydicom.datadict.tag_for_keyword(keyword), pydicom.datadict.dictionary_VR(keyword), None)
    ds.save_as(path)
    decoded = _decode(path)
    assert f"{keyword} empty: {default} assumed" in decoded.notes
    np.testing.assert_array_equal(decoded.pixels, _decode(tmp_path / "reference.dcm").pixels)


def test_empty_rescale_slope_keeps_the_image_as_pydicom_shows_it(tmp_path):
    """The issue's repro (empty RescaleSlope, intercept "0"): kept, equal to the stored values as pydicom decodes them."""
    path = tmp_path / "slope.dcm"
    _odd(path, "RescaleSlope", None, window=False)
    raw = pydicom.dcmread(path)
    assert raw["RescaleSlope"].value is None and float(raw.RescaleIntercept) == 0.0
    decoded = _decode(path)
    np.testing.assert_array_equal(decoded.pixels, raw.pixel_array.astype(np.float32))
    assert "RescaleSlope absent: 1 used" in decoded.notes


# ---- reject details: words kept, patient data scrubbed, advice a user can follow -------------------------------


def test_not_dicom_detail_keeps_dicm_and_gives_advice_for_our_cli(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("ward list, not an image\n")
    with pytest.raises(Reject) as err:
        _decode(path)
    detail = err.value.detail
    assert err.value.reason == "not_dicom" and "'DICM'" in detail
    assert "force=True" not in detail and "suffix" in detail and "SOURCE" in detail


def test_scrub_keeps_the_words_that_say_what_is_wrong_and_removes_patient_values(tmp_path):
    path = tmp_path / "p.dcm"
    write_cxr(path, seed=12)
    from pipeline.ingest.dicom import patient_values

    values = patient_values(pydicom.dcmread(path))
    assert FAKE_NAME in values and f"{FAKE_ID_PREFIX}0012" in values
    kept = scrub(TypeError("float() argument must be a string or a real number, not 'NoneType'"))
    assert "'NoneType'" in kept
    leaked = ValueError(f"Invalid value '{FAKE_NAME}' (VR PN) near \"{FAKE_ID_PREFIX}0012\" in 'PixelData'")
    text = scrub(leaked, patient_values=values)
    assert "Doe" not in text and FAKE_ID_PREFIX not in text and "'PixelData'" in text
    by_keyword = scrub(ValueError("bad PatientName 'Smith^John' and PatientID \"X-77\" near 'DICM'"))
    assert "Smith" not in by_keyword and "X-77" not in by_keyword and "'DICM'" in by_keyword


def test_dicom_without_preamble_and_file_meta_is_kept_with_a_note(tmp_path):
    path = tmp_path / "raw.dcm"
    write_cxr(path, seed=9)
    ds = pydicom.dcmread(path)
    expected = ds.pixel_array
    del ds.file_meta
    ds.preamble = None
    pydicom.dcmwrite(path, ds, enforce_file_format=False, implicit_vr=True, little_endian=True)
    assert path.read_bytes()[128:132] != b"DICM"
    decoded = _decode(path)
    assert any("File Meta" in n for n in decoded.notes)
    assert decoded.pixel_sha256 == pixel_hash(expected)


def test_masks_of_an_exif_rotated_image_are_rotated_with_it(tmp_path):
    """A mask without its own EXIF tag lies in its image's stored grid: it gets the image's orientation, as
    ``ImageOps.exif_transpose`` applies it, so image and mask stay aligned (no silent misalignment when square)."""
    from PIL import ImageOps

    from pipeline.ingest.preprocess import process, to_cache_masks

    grey = _gradient(24, 32)
    image = Image.fromarray(grey)
    exif = image.getexif()
    exif[0x0112] = 8
    image_path, mask_path = tmp_path / "o.png", tmp_path / "o_lungs.png"
    image.save(image_path, exif=exif)
    inside = np.zeros((24, 32), np.uint8)
    inside[2:10, 3:30] = 255
    Image.fromarray(inside).save(mask_path)
    task = Task(path=str(image_path), relative="o.png", masks={"lung": str(mask_path)}, size=16, aspect="pad",
                crop_fraction=1.0, modalities=None)
    with worker_settings():
        result = process(task)
    assert result.ok and result.mask_kinds == ("lung",) and not result.rejected_masks
    rotated = np.asarray(ImageOps.exif_transpose(_with_orientation(Image.fromarray(inside), 8)))
    assert rotated.shape == (32, 24) and result.shape == (32, 24)
    with worker_settings():
        expected = to_cache_masks({"lung": rotated}, task)["lung"]
    np.testing.assert_array_equal(result.masks["lung"], expected)


def _with_orientation(image: Image.Image, orientation: int) -> Image.Image:
    """``image`` reloaded with an EXIF orientation tag (what exif_transpose reads)."""
    import io

    exif = image.getexif()
    exif[0x0112] = orientation
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", exif=exif)
    return Image.open(io.BytesIO(buffer.getvalue()))
