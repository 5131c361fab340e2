"""Small but real DICOM files for ingest tests, written with pydicom (no mocks): every variant ingest must handle."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, SecondaryCaptureImageStorage, generate_uid

FAKE_NAME = "Doe^Janeprivate"
FAKE_ID_PREFIX = "PHI-ID-"


def phantom(rows: int, cols: int, seed: int, bright_blob: bool = False) -> np.ndarray:
    """A float image in [0, 1] (bright = dense): two dark 'lungs' in a brighter body, optional bright blob."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:rows, 0:cols] / np.array([rows, cols])[:, None, None]
    body = 0.6 + 0.1 * rng.standard_normal((rows, cols)) * 0.2
    lungs = ((x - 0.3) ** 2 / 0.02 + (y - 0.5) ** 2 / 0.09 < 1) | ((x - 0.7) ** 2 / 0.02 + (y - 0.5) ** 2 / 0.09 < 1)
    image = np.where(lungs, 0.2, body) + 0.05 * x
    if bright_blob:
        image = np.where((x - 0.3) ** 2 + (y - 0.6) ** 2 < 0.01, 0.9, image)
    return np.clip(image, 0, 1), lungs


def write_cxr(
    path: Path, *, seed: int = 0, rows: int = 40, cols: int = 36, institution: str = "Northgate General Hospital",
    view: str = "PA", series: str = "CHEST PA ERECT", age: str = "045Y", sex: str = "M", patient_id: str | None = None,
    modality: str = "DX", photometric: str = "MONOCHROME2", bits_stored: int = 12, slope: float = 1.0,
    intercept: float = 0.0, window: tuple[float, float] | None = None, rle: bool = False, frames: int = 1,
    rgb: bool = False, blob: bool = False, truncate: bool = False, pixel_spacing: str | None = "PixelSpacing",
) -> np.ndarray:
    """Write one DICOM; returns the stored-value image before MONOCHROME1 inversion, as float in [0, 1]."""
    image, _ = phantom(rows, cols, seed, blob)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    ds.InstitutionName = institution
    ds.Manufacturer = "TestVendor"
    ds.ViewPosition = view
    ds.SeriesDescription = series
    ds.PatientAge = age
    ds.PatientSex = sex
    ds.PatientName = FAKE_NAME
    ds.PatientID = patient_id if patient_id is not None else f"{FAKE_ID_PREFIX}{seed:04d}"
    ds.BodyPartExamined = "CHEST"
    ds.Rows, ds.Columns = rows, cols
    if pixel_spacing:
        setattr(ds, pixel_spacing, [0.5, 0.5])
    if rgb:
        grey = (image * 255).astype(np.uint8)
        pixels = np.stack([grey, grey, grey], axis=-1)
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit, ds.PixelRepresentation = 7, 0
    else:
        top = 2**bits_stored - 1
        stored = image if photometric == "MONOCHROME2" else 1.0 - image
        pixels = np.round(stored * top).astype(np.uint16 if bits_stored > 8 else np.uint8)
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
        ds.BitsAllocated = 16 if bits_stored > 8 else 8
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits_stored, bits_stored - 1, 0
        ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        if window is not None:
            ds.WindowCenter, ds.WindowWidth = window
    if frames > 1:
        ds.NumberOfFrames = frames
        pixels = np.stack([pixels] + [np.zeros_like(pixels)] * (frames - 1))
    ds.PixelData = pixels.tobytes()
    if rle:
        ds.compress(RLELossless, pixels)
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    if truncate:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) - len(data) // 3])
    return image


def write_masks(dicom_path: Path, rows: int = 40, cols: int = 36, seed: int = 0, shape: tuple[int, int] | None = None):
    """Lung (0/255) and shortcut (label-coded) PNG masks beside ``dicom_path``; ``shape`` forces a mismatch."""
    _, lungs = phantom(rows, cols, seed)
    base = dicom_path.with_suffix("")
    lung = (lungs * 255).astype(np.uint8)
    shortcut = np.zeros((rows, cols), np.uint8)
    shortcut[:4, :6] = 3  # a text stamp in the corner
    if shape is not None:
        lung = np.zeros(shape, np.uint8)
    Image.fromarray(lung).save(f"{base}_lungs.png")
    Image.fromarray(shortcut).save(f"{base}_shortcuts.png")
    return lungs, shortcut
