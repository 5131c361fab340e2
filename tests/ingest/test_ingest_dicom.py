"""Decoding: every variant a hospital writes gives the same display image, or a reject with a reason."""

from pathlib import Path

import numpy as np
import pytest

from pipeline.ingest.dicom import Reject, decode_any
from tests.helpers.ingest_factory import write_cxr

MODALITIES = ("CR", "DX", "OT")


def _decode(path: Path):
    return decode_any(path, path.read_bytes(), MODALITIES)


def _unit(pixels: np.ndarray) -> np.ndarray:
    return (pixels - pixels.min()) / (pixels.max() - pixels.min())


@pytest.fixture()
def reference(tmp_path):
    path = tmp_path / "ref.dcm"
    truth = write_cxr(path, seed=3)
    return _unit(_decode(path).pixels), truth


@pytest.mark.parametrize(
    "variant",
    [
        {"photometric": "MONOCHROME1"},
        {"rle": True},
        {"rle": True, "photometric": "MONOCHROME1"},
        {"slope": 2.0, "intercept": -1024.0},
        {"bits_stored": 16},
        {"bits_stored": 8},
        {"window": (2047.5, 4095.0)},
        {"frames": 3},
    ],
)
def test_decode_dicom_stored_variants_display_like_the_reference(tmp_path, reference, variant):
    ref, truth = reference
    path = tmp_path / "variant.dcm"
    write_cxr(path, seed=3, **variant)
    decoded = _decode(path)
    tolerance = 2 / 255 if variant.get("bits_stored") == 8 else 1e-3
    assert np.abs(_unit(decoded.pixels) - ref).max() <= tolerance
    assert np.corrcoef(ref.ravel(), truth.ravel())[0, 1] > 0.999  # the reference is the phantom, bright = dense


def test_decode_dicom_monochrome1_is_inverted_and_noted(tmp_path, reference):
    path = tmp_path / "m1.dcm"
    write_cxr(path, seed=3, photometric="MONOCHROME1")
    decoded = _decode(path)
    assert "MONOCHROME1 inverted" in decoded.notes
    # lungs (dark in the phantom) must stay dark: the centre of the left lung is darker than the body edge
    assert decoded.pixels[20, 10] < decoded.pixels[2, 18]


def test_decode_dicom_narrow_window_clips_outside_values(tmp_path):
    path = tmp_path / "w.dcm"
    write_cxr(path, seed=1, window=(1000.0, 200.0))
    pixels = _decode(path).pixels
    assert len(np.unique(pixels)) < 210 and pixels.max() > pixels.min()


def test_decode_dicom_zero_window_width_is_ignored_with_a_note(tmp_path, reference):
    path = tmp_path / "w0.dcm"
    write_cxr(path, seed=3, window=(2048.0, 0.0))
    decoded = _decode(path)
    assert any("WindowWidth" in n for n in decoded.notes)
    assert np.abs(_unit(decoded.pixels) - reference[0]).max() < 1e-3


def test_decode_dicom_multiframe_takes_first_frame_and_says_so(tmp_path):
    path = tmp_path / "mf.dcm"
    write_cxr(path, seed=2, frames=4)
    decoded = _decode(path)
    assert decoded.pixels.shape == (40, 36)
    assert any("first frame" in n for n in decoded.notes)


def test_decode_dicom_rgb_converted_to_grey_and_noted(tmp_path):
    path = tmp_path / "rgb.dcm"
    truth = write_cxr(path, seed=2, rgb=True, modality="OT")
    decoded = _decode(path)
    assert decoded.pixels.ndim == 2 and any("grey" in n for n in decoded.notes)
    assert np.corrcoef(decoded.pixels.ravel(), truth.ravel())[0, 1] > 0.99


def test_decode_dicom_spacing_falls_back_to_imager_pixel_spacing(tmp_path):
    path = tmp_path / "cr.dcm"
    write_cxr(path, pixel_spacing="ImagerPixelSpacing", modality="CR")
    decoded = _decode(path)
    assert decoded.spacing_mm == 0.5 and decoded.spacing_source == "ImagerPixelSpacing"
    none = tmp_path / "nospacing.dcm"
    write_cxr(none, pixel_spacing=None)
    assert np.isnan(_decode(none).spacing_mm) and _decode(none).spacing_source == "none"


@pytest.mark.parametrize(
    "kind, reason",
    [("truncated", "truncated"), ("ct", "wrong_modality"), ("text", "not_dicom"), ("constant", "constant_image")],
)
def test_decode_bad_files_reject_with_reason(tmp_path, kind, reason):
    path = tmp_path / f"{kind}.dcm"
    if kind == "truncated":
        write_cxr(path, truncate=True)
    elif kind == "ct":
        write_cxr(path, modality="CT")
    elif kind == "text":
        path.write_text("patient list, not an image\n")
    else:
        write_cxr(path, slope=0.0)  # every stored value maps to 0: a constant image
    with pytest.raises(Reject) as err:
        _decode(path)
    assert err.value.reason == reason


def test_decode_png_sixteen_bit_keeps_range(tmp_path):
    from PIL import Image

    values = (np.arange(40 * 36).reshape(40, 36) * 40).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "x.png")
    decoded = decode_any(tmp_path / "x.png", (tmp_path / "x.png").read_bytes(), MODALITIES)
    assert decoded.pixels.max() == values.max() and decoded.bits_stored == 16


@pytest.mark.parametrize("window", [(0.5, 1.0), (0.45, 0.1), (0.5, None), (0.3, 0.4)])  # fractions of the range
@pytest.mark.parametrize("rescale", [(1.0, 0.0), (0.5, -1024.0)])
def test_decode_dicom_linear_window_matches_pydicom_apply_voi_lut(tmp_path, window, rescale):
    import pydicom
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    slope, intercept = rescale
    center = intercept + slope * 4095 * window[0]
    width = 1.0 if window[1] is None else slope * 4095 * window[1]  # width 1: a threshold
    path = tmp_path / "w.dcm"
    write_cxr(path, seed=5, window=(center, width), slope=slope, intercept=intercept)
    ds = pydicom.dcmread(path)
    expected = apply_voi_lut(apply_modality_lut(ds.pixel_array, ds), ds).astype(float)
    got = _decode(path).pixels.astype(float)
    # same up to the output range: compare after min-max scaling both
    lo, hi = expected.min(), expected.max()
    assert np.allclose((expected - lo) / (hi - lo), (got - got.min()) / (got.max() - got.min()), atol=2e-3)


def test_scrub_removes_patient_values_from_decoder_messages():
    from pipeline.ingest.dicom import scrub

    text = scrub(ValueError("Invalid value 'Doe^Jane' for VR PN at \"PHI-ID-1\""), patient_values=["Doe^Jane", "PHI-ID-1"])
    assert "Doe" not in text and "PHI-ID" not in text and text.startswith("ValueError: Invalid value")
