"""One DICOM file per image, with the header a hospital's machine would write (and the quirks ingest must handle:
MONOCHROME1, 10/12/14-bit data, rescale, RLE Lossless, CR with only ImagerPixelSpacing, identifying patient data).

Every UID and date derives from (seed, site, index), never from the clock, so the same seed gives the same bytes.
"""

from __future__ import annotations

import io
from datetime import date, timedelta

import numpy as np

from pipeline.synth.config import SiteConfig
from pipeline.synth.factors import Factors, stream

UID_ROOT = "1.2.826.0.1.3680043.8.498."  # pydicom's root for generated UIDs
SOP_CLASS = {"DX": "1.2.840.10008.5.1.4.1.1.1.1", "CR": "1.2.840.10008.5.1.4.1.1.1"}
FIRST_STUDY = date(2020, 3, 1)


def stored_pixels(image: np.ndarray, site: SiteConfig) -> np.ndarray:
    """[0, 1] display intensity (bright = dense) -> stored uint16 values in the site's bit depth and photometry."""
    top = (1 << site.style.bits_stored) - 1
    values = np.round(np.clip(image, 0.0, 1.0) * top).astype(np.uint16)
    if site.style.photometric == "MONOCHROME1":  # stored inverted: low values display bright
        values = np.uint16(top) - values
    return values


def series_description(f: Factors) -> str:
    return "CHEST AP PORTABLE SUPINE" if f.position == "supine" else "CHEST PA ERECT"


def build_dataset(pixels: np.ndarray, f: Factors, site: SiteConfig, *, counterfactual: bool = False):
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

    style = site.style
    variant = "counterfactual" if counterfactual else "original"

    def uid(kind: str) -> str:
        return generate_uid(prefix=UID_ROOT, entropy_srcs=[str(f.seed), f.site, str(f.index), kind, variant])

    rng = stream(f.seed, f.site, f.index, "dicom")
    study_day = FIRST_STUDY + timedelta(days=f.study_days)
    birth = study_day - timedelta(days=int(f.age_years * 365.25 + rng.integers(0, 365)))
    study_time = f"{int(rng.integers(0, 24)):02d}{int(rng.integers(0, 60)):02d}{int(rng.integers(0, 60)):02d}"
    rows, cols = pixels.shape
    spacing = round(style.field_of_view_mm / cols, 4)
    top = (1 << style.bits_stored) - 1
    slope, intercept = style.rescale_slope, style.rescale_intercept

    ds = Dataset()
    ds.SOPClassUID = SOP_CLASS[style.modality]
    ds.SOPInstanceUID = uid("sop")
    ds.StudyInstanceUID = uid("study") if not counterfactual else generate_uid(
        prefix=UID_ROOT, entropy_srcs=[str(f.seed), f.site, str(f.index), "study", "original"])
    ds.SeriesInstanceUID = uid("series")
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = study_day.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = study_time
    ds.AccessionNumber = f"A{f.site[:2].upper()}{f.index:07d}"
    ds.Modality = style.modality
    ds.Manufacturer = style.manufacturer
    ds.ManufacturerModelName = style.model_name
    ds.InstitutionName = site.institution
    ds.StudyDescription = "XR CHEST 1 VIEW"
    ds.SeriesDescription = series_description(f)
    ds.ProtocolName = ds.SeriesDescription
    ds.PatientName = f.patient_name
    ds.PatientID = f.patient_id
    ds.PatientBirthDate = birth.strftime("%Y%m%d")
    ds.PatientSex = f.sex
    ds.PatientAge = f"{f.age_years:03d}Y"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = f.view
    ds.PatientOrientation = ["L", "F"] if f.view == "PA" else ["R", "F"]
    ds.StudyID = str(f.index)
    ds.SeriesNumber = 2 if counterfactual else 1
    ds.InstanceNumber = 1
    if style.pixel_spacing_tag in ("PixelSpacing", "both"):
        ds.PixelSpacing = [spacing, spacing]
    if style.pixel_spacing_tag in ("ImagerPixelSpacing", "both"):
        ds.ImagerPixelSpacing = [spacing, spacing]
    ds.RescaleIntercept = f"{intercept:g}"
    ds.RescaleSlope = f"{slope:g}"
    ds.RescaleType = "US"
    ds.WindowCenter = f"{slope * top / 2 + intercept:g}"
    ds.WindowWidth = f"{slope * top * style.window_width_fraction:g}"
    ds.set_pixel_data(pixels, photometric_interpretation=style.photometric, bits_stored=style.bits_stored,
                      generate_instance_uid=False)
    ds.PresentationLUTShape = "INVERSE" if style.photometric == "MONOCHROME1" else "IDENTITY"
    ds.SOPInstanceUID = uid("sop")  # (again) in case a pixel-data helper replaced it

    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if style.transfer_syntax == "rle_lossless":
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        _compress_rle(ds)
    else:
        ds.file_meta.TransferSyntaxUID = (
            ImplicitVRLittleEndian if style.transfer_syntax == "implicit_le" else ExplicitVRLittleEndian
        )
    return ds


def _compress_rle(ds) -> None:
    from pydicom.uid import RLELossless

    try:
        # fast (Rust); same bytes as pydicom's own encoder. The UID derives from the seed, never regenerated.
        ds.compress(RLELossless, encoding_plugin="pylibjpeg", generate_instance_uid=False)
    except (RuntimeError, ValueError, ImportError):
        ds.compress(RLELossless, encoding_plugin="pydicom", generate_instance_uid=False)


def dicom_bytes(ds) -> bytes:
    from pydicom.filewriter import dcmwrite

    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()
