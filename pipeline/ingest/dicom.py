"""Decode one DICOM (or PNG/JPEG/TIFF) file into what a radiology viewer shows, or say why it cannot be used.

DICOM, in order (docs/ingest.md#decoding): pydicom decodes the first frame (every transfer syntax its plugins
decode; YBR converted to RGB by pydicom) -> optional tags that are present but empty or malformed are treated as
absent (a note each) -> PALETTE COLOR through pydicom's ``apply_color_lut``, RGB to grey (BT.601 luma) -> Modality
LUT (RescaleSlope/Intercept) -> VOI LUT or window (skipped when the width is <= 0) -> MONOCHROME1 inverted so
bright = dense -> pixel padding (PixelPaddingValue, up to PixelPaddingRangeLimit) excluded from the range and set to
the darkest anatomy value. Other photometric interpretations are rejected, named. A constant result is rejected:
some JPEG 2000 files decode to zeros without an error (pydicom#966). Spacing: PixelSpacing, else ImagerPixelSpacing.
PNG/JPEG/TIFF: Pillow's own conversions (palette, colour, CMYK, YCbCr, 1-bit to grey; transparency over black).
"""

from __future__ import annotations

import hashlib
import math
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
# Tags copied (as text) into the record; PatientName is deliberately absent and PatientID is hashed by the caller.
TEXT_TAGS = (
    "Modality", "Manufacturer", "InstitutionName", "ViewPosition", "SeriesDescription", "StudyDescription",
    "ProtocolName", "ImageComments", "PatientPosition", "PatientAge", "PatientSex", "BodyPartExamined",
    "PhotometricInterpretation",
)
# Their values are scrubbed from every message that reaches rejects.csv or the notes (never written out)
PATIENT_KEYWORDS = (
    "PatientName", "PatientID", "PatientBirthDate", "OtherPatientIDs", "OtherPatientNames",  # never written out
    "PatientBirthName", "PatientMotherBirthName", "IssuerOfPatientID", "PatientAddress", "PatientTelephoneNumbers",  # never written out
)


# A quoted value right after a patient keyword, a patient tag (0010,xxxx) or a PN (person name) VR
_PATIENT_CONTEXT = re.compile(
    r"((?:Patient\w*|OtherPatient\w*|\(0010,\s*[0-9A-Fa-f]{4}\)|\b0010[0-9A-Fa-f]{4}\b|\bVR:? '?PN'?)[^'\"\n]{0,40}?)"
    r"(b?'[^']*'|\"[^\"]*\")"
)
_FORCE_ADVICE = re.compile(r"(?i)[^.]*\buse force=True\b[^.]*\.?")
NOT_DICOM_ADVICE = (
    " cxr-fishr ingest reads files ending in " + "/".join(IMAGE_SUFFIXES) + " with Pillow and every other file as"
    " DICOM: give an image its format's suffix, or move a file that is not an image out of SOURCE (it is only"
    " listed in rejects.csv)."
)


def scrub(error: object, *, patient_values: tuple[str, ...] | list[str] = (), with_type: bool = True,
          limit: int = 200) -> str:
    """An exception or warning as text for rejects.csv and the notes, without patient data: every value of
    ``patient_values`` (the file's own patient name/ID/birth date, each name part; never written out) and any
    quoted value right after a patient keyword or tag or a PN VR becomes '<patient>'; everything else (``'DICM'``,
    ``'NoneType'``, a VR) is kept. pydicom's "use force=True" (not an option of ours) becomes what a user can do."""
    text = str(error)
    for value in sorted({v for v in _patient_parts(patient_values)}, key=len, reverse=True):
        text = re.sub(re.escape(value), "<patient>", text, flags=re.IGNORECASE)
    text = _PATIENT_CONTEXT.sub(lambda m: f"{m.group(1)}'<patient>'", text)[:limit]
    text = _FORCE_ADVICE.sub(NOT_DICOM_ADVICE, text)  # cut only after a full sentence: the advice stays whole
    return f"{type(error).__name__}: {text}" if with_type else text


def scrub_values(text: str, patient_values: tuple[str, ...] | list[str]) -> str:
    """A message that quotes a header or CSV value (a reject detail, a note, an example) with the patient's values
    (name parts, IDs, birth date of the file's header; its CSV patient value) replaced by '<patient>': the one scrub
    every message path that quotes a value goes through (a Modality 'Quentin' of patient 'Doe^Quentin' is hidden)."""
    return scrub(text, patient_values=patient_values, with_type=False, limit=max(len(str(text)), 200))


def _patient_parts(values: tuple[str, ...] | list[str]) -> list[str]:
    """Each value, and the parts of a name (``Doe^Jane``) of 3 characters or more."""
    parts = []
    for value in values:
        value = value.strip()
        if len(value) >= 2:
            parts.append(value)
        parts += [p.strip() for p in re.split(r"[\^=\\]", value) if len(p.strip()) >= 3]
    return parts


def patient_values(ds) -> list[str]:
    """The text of the patient elements of a dataset that are present (any unreadable one skipped)."""
    values = []
    for keyword in PATIENT_KEYWORDS:
        try:
            value = ds.get(keyword)
        except Exception:  # noqa: BLE001  a malformed patient element: nothing to scrub that we could read
            continue
        if value is not None:
            values += [str(v) for v in value] if _is_multi(value) else [str(value)]
    return values


IDENTIFIER_KEYWORDS = ("PatientName", "PatientID", "OtherPatientIDs", "OtherPatientNames", "PatientBirthName")  # values never written out
MIN_TOKEN = 3  # shorter parts ('Li', 'Jo', an ID '12') would scrub half of every file name


def identifier_tokens(ds) -> tuple[str, ...]:
    """The patient's name parts (split on ^, = and spaces) and IDs of a dataset, each of >= 3 characters, longest
    first: what must not reach an output through a file name."""
    tokens: set[str] = set()
    for keyword in IDENTIFIER_KEYWORDS:
        try:
            value = ds.get(keyword)
        except Exception:  # noqa: BLE001  a malformed element: nothing readable to scrub
            continue
        for text in ([str(v) for v in value] if _is_multi(value) else [str(value)]) if value is not None else []:
            tokens.update(p.strip() for p in [text.strip(), *re.split(r"[\^=\s]+", text)] if len(p.strip()) >= MIN_TOKEN)
    return tuple(sorted(tokens, key=lambda t: (-len(t), t)))


def _is_multi(value: object) -> bool:
    return isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue"


class Reject(Exception):
    """A file that cannot be ingested; ``reason`` is a short code, ``detail`` says what was seen."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.patient_tokens: tuple[str, ...] = ()  # the file's name parts and IDs, when its header was read


@dataclass
class Decoded:
    pixels: np.ndarray | None  # float32 (rows, cols), bright = dense; None once the cache has it (ingest workers)
    tags: dict[str, str] = field(default_factory=dict)
    patient_id: str | None = None
    notes: list[str] = field(default_factory=list)
    spacing_mm: float = math.nan
    spacing_source: str = "none"
    transfer_syntax: str = ""
    bits_stored: int = 0
    pixel_sha256: str = ""  # of the stored pixel values (before any LUT): equal for exact duplicate images
    pixel_range: tuple[np.float32, np.float32] | None = None  # (min, max) of ``pixels``, known from the checks
    exif_orientation: int = 1  # EXIF orientation applied to an image (1 = none); its masks get the same
    # the file's patient name parts and IDs (pipeline/ingest/privacy.py scrubs them from file names); memory only
    patient_tokens: tuple[str, ...] = ()


# Optional numeric elements: present but empty or unreadable = absent (a note); value = how many numbers it needs
OPTIONAL_NUMBERS = {
    "RescaleSlope": 1, "RescaleIntercept": 1, "WindowCenter": 1, "WindowWidth": 1, "PixelSpacing": 2,
    "ImagerPixelSpacing": 2, "PixelPaddingValue": 1, "PixelPaddingRangeLimit": 1, "NumberOfFrames": 1,
}
OPTIONAL_LUTS = ("ModalityLUTSequence", "VOILUTSequence")
VOI_FUNCTIONS = ("LINEAR", "LINEAR_EXACT", "SIGMOID")
# What pydicom gives after its own conversions (YBR_* -> RGB) that has a grey conversion here
GREY, COLOUR = ("MONOCHROME1", "MONOCHROME2"), ("RGB", "PALETTE COLOR")
SYNTAXES_BY_ENCODING = {  # (implicit VR, little endian) of a dataset read without File Meta -> its transfer syntax
    (True, True): "1.2.840.10008.1.2", (False, True): "1.2.840.10008.1.2.1", (False, False): "1.2.840.10008.1.2.2",
}


def pixel_hash(arr: np.ndarray) -> str:
    digest = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode())
    digest.update(np.ascontiguousarray(arr).data)
    return digest.hexdigest()


def _text(value: object) -> str:
    if value is None:
        return ""
    if _is_multi(value):
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _get(ds, keyword: str) -> object:
    """``ds.get(keyword)``, None for an element pydicom cannot convert (a malformed value)."""
    try:
        return ds.get(keyword)
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError):
        return None


def _numbers(ds, keyword: str) -> list[float] | None:
    """The element's values as finite floats, None when it is empty, malformed or has too few numbers."""
    value = _get(ds, keyword)
    values = list(value) if _is_multi(value) else [value]
    try:
        numbers = [float(v) for v in values if v is not None and str(v).strip() != ""]
    except (TypeError, ValueError):
        return None
    ok = len(numbers) >= OPTIONAL_NUMBERS[keyword] and all(math.isfinite(n) for n in numbers)
    return numbers if ok else None


def drop_unusable_optional(ds, notes: list[str]) -> None:
    """Delete optional elements that are present but empty or malformed, so that they count as absent for us and for
    pydicom's own LUT functions (a note each); a rescale or window missing its partner is completed or dropped."""
    for keyword in OPTIONAL_NUMBERS:
        if keyword in ds and _numbers(ds, keyword) is None:
            _drop(ds, keyword, notes)
    for keyword in OPTIONAL_LUTS:
        if keyword in ds and not _usable_lut(ds, keyword):
            _drop(ds, keyword, notes)
    function = _text(_get(ds, "VOILUTFunction")).upper()
    if "VOILUTFunction" in ds and function not in VOI_FUNCTIONS:
        _drop(ds, "VOILUTFunction", notes, "LINEAR")
    if ("RescaleSlope" in ds) != ("RescaleIntercept" in ds):  # a viewer's defaults: slope 1, intercept 0
        missing = "RescaleIntercept" if "RescaleSlope" in ds else "RescaleSlope"
        setattr(ds, missing, "0" if missing == "RescaleIntercept" else "1")
        notes.append(f"{missing} absent: {getattr(ds, missing)} used")
    if ("WindowCenter" in ds) != ("WindowWidth" in ds):
        _drop(ds, "WindowCenter" if "WindowCenter" in ds else "WindowWidth", notes, "no window (its partner is absent)")
    _usable_bits_stored(ds, notes)
    _viewer_defaults(ds, notes)


def _viewer_defaults(ds, notes: list[str]) -> None:
    """Required image elements that are present but empty get the value a viewer assumes (pydicom cannot decode
    without them), noted: SamplesPerPixel from the photometric interpretation, PhotometricInterpretation MONOCHROME2
    for one sample (RGB for three), PixelRepresentation 0 (unsigned), PlanarConfiguration 0 (interleaved)."""
    photometric = _text(_get(ds, "PhotometricInterpretation")).upper()
    colour = photometric == "RGB" or photometric.startswith("YBR")
    defaults = {
        "SamplesPerPixel": 3 if colour else 1,
        "PhotometricInterpretation": "RGB" if _get(ds, "SamplesPerPixel") == 3 else "MONOCHROME2",
        "PixelRepresentation": 0,
        "PlanarConfiguration": 0,
    }
    for keyword, default in defaults.items():
        if keyword in ds and _get(ds, keyword) in (None, ""):
            setattr(ds, keyword, default)
            notes.append(f"{keyword} empty: {default} assumed")


def _drop(ds, keyword: str, notes: list[str], instead: str = "treated as absent") -> None:
    value = _text(_get(ds, keyword)) if keyword not in OPTIONAL_LUTS else "sequence"
    notes.append(f"{keyword} {'empty' if not value else 'unusable'}: {instead}")
    del ds[keyword]


def _usable_lut(ds, keyword: str) -> bool:
    try:
        item = ds[keyword].value[0]
        return len(item.LUTDescriptor) == 3 and len(item.LUTData) > 0
    except (IndexError, TypeError, ValueError, AttributeError, KeyError):
        return False


def _usable_bits_stored(ds, notes: list[str]) -> None:
    """BitsStored empty or outside 1..BitsAllocated: BitsAllocated, as a viewer assumes (pydicom needs a number)."""
    allocated, stored = _get(ds, "BitsAllocated"), _get(ds, "BitsStored")
    if isinstance(allocated, int) and not (isinstance(stored, int) and 0 < stored <= allocated):
        notes.append(f"BitsStored {'empty' if stored in (None, '') else 'unusable'}: BitsAllocated {allocated} used")
        ds.BitsStored = allocated


def _spacing(ds) -> tuple[float, str]:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        numbers = _numbers(ds, keyword) if keyword in ds else None
        if numbers and all(n > 0 for n in numbers):
            return numbers[0], keyword
    return math.nan, "none"


def _first_frame(ds, notes: list[str]) -> tuple[np.ndarray, str]:
    """The first frame as pydicom decodes it (YBR converted to RGB) and the photometric interpretation after that."""
    from pydicom.pixels import as_pixel_options, get_decoder

    frames = int(_numbers(ds, "NumberOfFrames")[0]) if "NumberOfFrames" in ds else 1
    if frames > 1:
        notes.append(f"multi-frame ({frames} frames): first frame used")
    declared = _text(_get(ds, "PhotometricInterpretation")).strip().upper()
    if declared and declared not in DECODED_TO_CONVERTED:
        raise unsupported_photometric(declared, _text(_get(ds, "SamplesPerPixel")) or "?")
    syntax = ds.file_meta.get("TransferSyntaxUID")
    if not syntax:
        raise Reject("decode_error", "no (0002,0010) Transfer Syntax UID in the File Meta Information")
    arr, meta = get_decoder(syntax).as_array(ds, index=0, **as_pixel_options(ds))
    return arr, str(meta.get("photometric_interpretation", _get(ds, "PhotometricInterpretation") or "")).upper()


def _first_number(value: object) -> float:
    return float(value[0] if _is_multi(value) else value)


def _modality(arr: np.ndarray, ds) -> np.ndarray:
    """Rescale slope/intercept in float32 (the common case: tested equal to pydicom's float64 after rounding to
    float32, at a quarter of its cost on a 5-megapixel image); pydicom's apply_modality_lut for a Modality LUT."""
    from pydicom.pixels import apply_modality_lut

    if "ModalityLUTSequence" in ds or "RescaleSlope" not in ds:
        return apply_modality_lut(arr, ds)
    slope, intercept = _first_number(ds.RescaleSlope), _first_number(ds.RescaleIntercept)
    out = arr.astype(np.float32)
    if slope != 1.0:
        out *= np.float32(slope)
    if intercept != 0.0:
        out += np.float32(intercept)
    return out


def _voi(arr: np.ndarray, ds, notes: list[str]) -> np.ndarray:
    """VOI LUT or window (a float32 ``arr`` is changed in place). A LINEAR window (the common case) is computed here
    in float32, scaled to [0, 1] (DICOM PS3.3 C.11.2.1.2.1; the output range does not matter, the cache rescales per
    image); anything else (VOI LUT sequences, SIGMOID, LINEAR_EXACT) goes to pydicom's ``apply_voi_lut``."""
    from pydicom.pixels import apply_voi_lut

    if "VOILUTSequence" not in ds:
        if "WindowWidth" not in ds:
            return arr
        center, width = _first_number(ds.WindowCenter), _first_number(ds.WindowWidth)
        if width <= 0:  # apply_voi_lut raises on width <= 0 (pydicom#1073)
            notes.append(f"WindowWidth {width:g} <= 0: window ignored")
            return arr
        if _text(_get(ds, "VOILUTFunction") or "LINEAR").upper() == "LINEAR":
            if width == 1:
                return (arr > center - 0.5).astype(np.float32)
            # in place (a float32 ``arr`` is the fresh output of _modality) or one new array: the same float32
            # arithmetic as ((x - c') / w' + 0.5) without temporaries, which cost page faults at 5 megapixels
            into = {"out": arr} if arr.dtype == np.float32 and arr.flags.writeable else {"dtype": np.float32}
            out = np.subtract(arr, np.float32(center - 0.5), **into)
            out /= np.float32(width - 1)
            out += np.float32(0.5)
            return np.clip(out, 0.0, 1.0, out=out)
    try:
        return apply_voi_lut(arr, ds, index=0, prefer_lut=True)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        notes.append(f"VOI LUT/window not applied ({type(exc).__name__})")
        return arr


def to_grey(arr: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma (Pillow's ``convert("L")`` weights, without its rounding to 8 bits) of an RGB array."""
    return arr[..., 0] * np.float32(0.299) + arr[..., 1] * np.float32(0.587) + arr[..., 2] * np.float32(0.114)


def _padding(arr: np.ndarray, ds, notes: list[str]) -> np.ndarray | None:
    """Stored values that are pixel padding (PixelPaddingValue, or the range up to PixelPaddingRangeLimit), None
    when none is declared or found. The tags hold stored values in the pixels' own representation."""
    if "PixelPaddingValue" not in ds:
        if "PixelPaddingRangeLimit" in ds:
            notes.append("PixelPaddingRangeLimit without PixelPaddingValue: no padding excluded")
        return None
    ends = [_signed(int(_numbers(ds, k)[0]), ds) for k in ("PixelPaddingValue", "PixelPaddingRangeLimit") if k in ds]
    low, high = min(ends), max(ends)
    padding = (arr >= low) & (arr <= high) if high > low else arr == low
    count = int(np.count_nonzero(padding))
    if not count:
        return None
    notes.append(f"pixel padding ({count / padding.size:.0%} of pixels) excluded from the range, set to background")
    return padding


def _signed(value: int, ds) -> int:
    """A padding value written unsigned (US) for signed pixels (PixelRepresentation 1) as the signed stored value."""
    bits = int(_get(ds, "BitsAllocated") or 16)
    if _get(ds, "PixelRepresentation") == 1 and value >= 1 << (bits - 1):
        return value - (1 << bits)
    return value


def _display(arr: np.ndarray, ds, photometric: str, notes: list[str]) -> np.ndarray:
    """Stored pixels -> float32 grey as a viewer shows them (before padding), bright = dense."""
    from pydicom.pixels import apply_color_lut

    if photometric in GREY and arr.ndim == 2:
        pixels = np.asarray(_voi(_modality(arr, ds), ds, notes), dtype=np.float32)
        inverse = _text(_get(ds, "PresentationLUTShape")).upper() == "INVERSE"
        if photometric == "MONOCHROME1" or inverse:
            pixels = _inverted(pixels)
            notes.append(f"{'MONOCHROME1' if photometric == 'MONOCHROME1' else 'Presentation LUT INVERSE'} inverted")
        return pixels
    if photometric == "PALETTE COLOR" and arr.ndim == 2:
        notes.append("PALETTE COLOR converted to grey through its colour LUT")
        return to_grey(apply_color_lut(arr, ds).astype(np.float32))
    if photometric == "RGB" and arr.ndim == 3 and arr.shape[-1] == 3:
        original = _text(_get(ds, "PhotometricInterpretation")).upper()
        notes.append(f"{original} converted to grey" if original == "RGB" else f"{original} -> RGB -> grey")
        return to_grey(arr.astype(np.float32))
    raise unsupported_photometric(photometric, arr.shape[-1] if arr.ndim == 3 else 1)


# Interpretations pydicom decodes to one we convert (YBR_* -> RGB); any other (CMYK, HSV, ARGB, a typo) is refused
# before decoding, so the reject names the mode instead of quoting a decoder's error
DECODED_TO_CONVERTED = (*GREY, *COLOUR, "YBR_FULL", "YBR_FULL_422", "YBR_PARTIAL_420", "YBR_PARTIAL_422", "YBR_ICT",
                        "YBR_RCT")


def unsupported_photometric(photometric: str, samples: int | str) -> Reject:
    """The ``unsupported_photometric`` reject naming the mode (``samples``: per pixel, as the file says)."""
    return Reject("unsupported_photometric", f"PhotometricInterpretation {photometric or 'missing'!r} with "
                  f"{samples} sample(s) per pixel: no grey conversion for it (MONOCHROME1/2, PALETTE COLOR, RGB, "
                  "YBR_FULL/YBR_FULL_422 are converted); convert the file to one of these to ingest it")


def read_dataset(data: bytes, notes: list[str]):
    """pydicom's dataset, or a Reject. A file without the 128-byte preamble and File Meta (older PACS exports) is
    kept when pydicom can still read it as a plain dataset with pixel data (a note says so)."""
    import io

    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        return pydicom.dcmread(io.BytesIO(data))
    except InvalidDicomError as exc:
        ds = _read_without_meta(data)
        if ds is None:
            raise Reject("not_dicom", scrub(exc)) from None
        notes.append(f"no DICOM File Meta ('DICM' prefix missing): read as {ds.file_meta.TransferSyntaxUID.name}")
        return ds
    except (struct.error, EOFError) as exc:  # pydicom ran out of bytes mid-element: a cut file
        raise Reject("truncated", f"the file ends at byte {len(data)} inside an element, before any pixel data: a cut "
                     f"file ({scrub(exc, patient_values=_patient_values_of_broken(data))}); export the image "
                     "again") from None
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError, NotImplementedError) as exc:
        raise Reject("unreadable", scrub(exc, patient_values=_patient_values_of_broken(data))) from None


def _read_without_meta(data: bytes):
    """A dataset read with pydicom's ``force=True`` when it has what an image needs (Rows, Columns, PixelData)."""
    import io

    import pydicom
    from pydicom.dataset import FileMetaDataset

    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=True)
        if not all(k in ds for k in ("Rows", "Columns", "PixelData")):
            return None
        syntax = SYNTAXES_BY_ENCODING.get(tuple(ds.original_encoding))
    except Exception:  # noqa: BLE001  anything that is not a readable dataset: the caller's not_dicom
        return None
    if syntax is None:
        return None
    ds.file_meta = getattr(ds, "file_meta", None) or FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    return ds


def _patient_values_of_broken(data: bytes) -> list[str]:
    """The patient values of a file pydicom failed to read whole, as far as they can be read (for scrubbing)."""
    import io

    import pydicom

    try:
        tags = [pydicom.datadict.tag_for_keyword(k) for k in PATIENT_KEYWORDS]
        return patient_values(pydicom.dcmread(io.BytesIO(data), force=True, specific_tags=tags,
                                              stop_before_pixels=True))
    except Exception:  # noqa: BLE001  nothing readable: only the keyword rule of ``scrub`` applies
        return []


PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def no_pixels_reason(data: bytes, ds) -> Reject:
    """Why a dataset read without pixel data has none: ``truncated`` when the file is cut or broken before them
    (pydicom reads a cut file silently, so this compares where its parsing stopped with the file's size), else
    ``no_pixel_data`` naming the SOP class and Modality (a complete non-image object: SR, KO, PR...)."""
    broken = broken_at(data, _fresh(data) or ds)
    if broken is not None:
        return Reject("truncated", f"{broken}, before any pixel data: a cut or corrupt file, not a non-image object; "
                      "export the image again")
    sop = _text(_get(ds, "SOPClassUID"))
    return Reject("no_pixel_data", f"a complete DICOM without pixel data: SOP class {sop or 'missing'}"
                  f"{f' ({_uid_name(sop)})' if _uid_name(sop) else ''}, Modality {_text(_get(ds, 'Modality')) or 'missing'}"
                  "; not an image (move it out of SOURCE)")


def _fresh(data: bytes):
    """The dataset read again with every element still raw (the caller's copy has some converted, which drops
    their declared lengths); None when it cannot be read."""
    import io

    import pydicom

    try:
        return pydicom.dcmread(io.BytesIO(data), force=True)
    except Exception:  # noqa: BLE001  the caller's dataset is used instead
        return None


def _uid_name(uid: str) -> str:
    from pydicom.uid import UID

    name = UID(uid).name if uid else ""
    return "" if name == uid else name


def broken_at(data: bytes, ds) -> str | None:
    """'the file ends at byte N ...' when pydicom's parse of ``ds`` (read from ``data``) stopped short: the File Meta
    is shorter than its group length, an element's value is shorter than its declared length (a cut, or a corrupt
    length that swallowed the rest), bytes are left after the last element, or an image SOP class (or Rows/Columns)
    has no pixel data at the very end of the file. None for a complete file."""
    size = len(data)
    meta_length = _get(getattr(ds, "file_meta", {}), "FileMetaInformationGroupLength") if getattr(ds, "file_meta", None) else None
    preamble = 132 if data[128:132] == b"DICM" else 0
    if isinstance(meta_length, int) and preamble and size < preamble + 12 + meta_length:
        return f"the file ends at byte {size}, inside its File Meta Information (which runs to byte {preamble + 12 + meta_length})"
    end = preamble + 12 + meta_length if isinstance(meta_length, int) and preamble else 0
    last = "the File Meta"
    for tag in list(ds._dict):
        raw = ds._dict[tag]
        tell, length, value = getattr(raw, "value_tell", None), getattr(raw, "length", None), getattr(raw, "value", None)
        if tell is None or not isinstance(length, int) or length == 0xFFFFFFFF:
            # a sequence (pydicom parses it on reading, keeping no offsets) or an undefined length: its end is unknown
            end, last = None, f"element {tag}"
            continue
        got = len(value) if isinstance(value, bytes) else length
        if got < length:
            return (f"the file breaks at byte {tell}: element {tag} declares {length} bytes but only {got} remain "
                    f"(the file ends at byte {size})")
        end, last = tell + length, f"element {tag}"
    if end and end < size and not any(k in ds for k in PIXEL_KEYWORDS):
        return f"parsing stops at byte {end} (after {last}) but the file has {size} bytes"
    sop = _uid_name(_text(_get(ds, "SOPClassUID")))
    if "Image Storage" in sop or ("Rows" in ds and "Columns" in ds) or not len(ds):
        what = f"its SOP class is {sop}" if "Image Storage" in sop else "it has image attributes (Rows, Columns)"
        return (f"the file ends at byte {size} (after {last}) with no dataset after the File Meta" if not len(ds)
                else f"the file ends at byte {size} (after {last}) but {what}")
    return None


_DECODE_ERRORS = (ValueError, TypeError, RuntimeError, NotImplementedError, AttributeError, KeyError, IndexError,
                  EOFError, OSError, MemoryError)
_TRUNCATED_WORDS = ("less than expected", "truncat", "end of file", "buffer is too small", "shorter than")


def decode_dicom(
    data: bytes, modalities: tuple[str, ...] | None, *, patient: list[str] | None = None,
    identifiers: list[str] | None = None,
) -> Decoded:
    """``patient`` (filled here): the file's patient values, which the caller scrubs from decoder warnings;
    ``identifiers`` (filled here): its name parts and IDs (:func:`identifier_tokens`)."""
    notes: list[str] = []
    ds = read_dataset(data, notes)
    patient = patient if patient is not None else []
    patient += patient_values(ds)
    if identifiers is not None:
        identifiers += identifier_tokens(ds)
    if not any(k in ds for k in PIXEL_KEYWORDS):
        raise no_pixels_reason(data, ds)
    tags = {name: _text(_get(ds, name)) for name in TEXT_TAGS}
    modality = tags["Modality"].upper()
    if modalities is not None and modality and modality not in modalities:
        raise Reject("wrong_modality", f"Modality {modality!r} is not one of {list(modalities)}")
    if not modality:
        notes.append("no Modality tag")
    drop_unusable_optional(ds, notes)
    try:
        arr, photometric = _first_frame(ds, notes)
    except _DECODE_ERRORS as exc:
        truncated = any(k in str(exc).lower() for k in _TRUNCATED_WORDS)
        raise Reject("truncated" if truncated else "decode_error", scrub(exc, patient_values=patient)) from None
    stored_hash = pixel_hash(arr)
    padding = _padding(arr, ds, notes) if photometric in GREY and arr.ndim == 2 else None
    pixels = _display(arr, ds, photometric, notes)
    try:
        low, high = check_pixels(pixels, padding)
    except Reject as exc:
        if exc.reason != "constant_image" or (padding is not None and padding.all()):
            raise
        raise Reject("constant_image", constant_cause(arr, ds, photometric, padding)) from None
    spacing, spacing_source = _spacing(ds)
    patient_id = _text(_get(ds, "PatientID")) or None  # only ever stored as a salted hash (fields.patient_key)
    return Decoded(
        pixels=pixels, tags=tags, patient_id=patient_id, notes=notes, spacing_mm=spacing,
        spacing_source=spacing_source, transfer_syntax=str(ds.file_meta.get("TransferSyntaxUID", "")),
        bits_stored=int(_get(ds, "BitsStored") or 0), pixel_sha256=stored_hash, pixel_range=(low, high),
    )


def constant_cause(arr: np.ndarray, ds, photometric: str, padding: np.ndarray | None = None) -> str:
    """Why a decoded image came out constant, for its reject detail: the stored array itself is constant, or the
    VOI window [center - width/2, center + width/2] lies entirely above or below every value after the Modality LUT
    (a viewer shows it blank too), else a silent decoder failure (pydicom#966). Pixel padding is left out."""
    anatomy = arr if padding is None else arr[~padding]
    stored_low, stored_high = float(np.min(anatomy)), float(np.max(anatomy))
    if stored_low == stored_high:
        return (f"every stored pixel value is {stored_low:g}: the file's pixel data itself is constant (a blank "
                "export, or an encoder/decoder that wrote zeros, pydicom#966); export the image again")
    if photometric in GREY and arr.ndim == 2 and "WindowWidth" in ds and "VOILUTSequence" not in ds:
        values = _modality(anatomy, ds)
        low, high = float(np.min(values)), float(np.max(values))
        center, width = _first_number(ds.WindowCenter), _first_number(ds.WindowWidth)
        window = f"the VOI window (WindowCenter {center:g}, WindowWidth {width:g}) covers [{center - width / 2:g}, " \
                 f"{center + width / 2:g}]"
        side = "above" if high <= center - width / 2 else "below" if low >= center + width / 2 else ""
        if side:
            return (f"{window}, entirely {side} every pixel value ({low:g} to {high:g} after the Modality LUT): the "
                    "window blanks the image (a viewer shows it blank too); fix or remove WindowCenter/WindowWidth")
    return (f"every displayed pixel is the same although the stored values range {stored_low:g} to {stored_high:g} "
            "(a LUT or a silent decoder failure?)")


def _inverted(pixels: np.ndarray) -> np.ndarray:
    """max + min - pixels (bright = dense for MONOCHROME1), in place when the array is ours to change."""
    total = pixels.max() + pixels.min()
    return np.subtract(total, pixels, out=pixels) if pixels.flags.writeable else total - pixels


def check_pixels(pixels: np.ndarray, padding: np.ndarray | None = None) -> tuple[np.float32, np.float32]:
    """Reject what cannot be an image; returns (min, max) of the pixels that are not padding, which the cache scaling
    reuses instead of a second pass. Padding pixels are set to that min (background) in place."""
    if pixels.ndim != 2 or min(pixels.shape) < 2:
        raise Reject("not_2d", f"pixel array shape {pixels.shape}")
    if padding is None:
        low, high = pixels.min(), pixels.max()
    elif padding.all():
        raise Reject("constant_image", "every pixel is pixel padding (PixelPaddingValue)")
    else:
        anatomy = pixels[~padding]
        low, high = anatomy.min(), anatomy.max()
    if not (math.isfinite(low) and math.isfinite(high)):  # min/max propagate NaN: no separate isfinite pass
        raise Reject("non_finite", "NaN or infinite pixel values")
    if high == low:
        raise Reject("constant_image", f"every pixel is {float(low)!r} (a silent decoder failure?)")
    if padding is not None:
        pixels[padding] = low
    return low, high


PILLOW_GREY_MODES = ("L", "I", "F", "I;16", "I;16L", "I;16B", "I;16N")
EXIF_ORIENTATION = 0x0112
PILLOW_BITS = {"1": 1, "I;16": 16, "I;16L": 16, "I;16B": 16, "I;16N": 16, "I": 32, "F": 32}


def _pillow_grey(image, notes: list[str]) -> np.ndarray:
    """A Pillow image as a viewer shows it, in grey, through Pillow's own conversions: greyscale modes as they
    are, transparency composited over black, everything else ``convert("L")``; a mode it cannot convert is rejected."""
    from PIL import Image

    mode = image.mode
    if mode in PILLOW_GREY_MODES:
        return np.asarray(image)
    has_alpha = mode in ("LA", "La", "PA", "RGBA", "RGBa") or (mode == "P" and "transparency" in image.info)
    try:
        if has_alpha:
            rgba = image.convert("RGBA")
            if rgba.getextrema()[3][0] < 255:
                notes.append(f"{mode} transparency composited over black")
                black = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
                return np.asarray(Image.alpha_composite(black, rgba).convert("L"))
            image = rgba
        grey = image.convert("L")
    except ValueError as exc:
        raise Reject("unsupported_image_mode", f"Pillow image mode {mode!r} has no grey conversion ({exc}); "
                     "save the image as greyscale (L or I;16) or RGB to ingest it") from None
    notes.append(f"{mode} converted to grey" + (" through its palette" if mode.startswith("P") else ""))
    return np.asarray(grey)


def decode_image(data: bytes) -> Decoded:
    """A PNG/JPEG/TIFF/BMP as a viewer shows it (EXIF orientation applied, first frame); metadata comes from the
    CSV. ``pixel_sha256`` hashes the stored array (palette indices, colour channels) before any conversion."""
    import io

    from PIL import Image, ImageOps, UnidentifiedImageError

    notes: list[str] = []
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if getattr(image, "n_frames", 1) > 1:
                notes.append(f"multi-frame ({image.n_frames} frames): first frame used")
            stored = np.asarray(image)  # a copy of Pillow's buffer (tobytes): made once
            stored_hash = pixel_hash(stored)
            shown = image
            orientation = image.getexif().get(EXIF_ORIENTATION, 1)
            if orientation not in (1, None):  # exif_transpose copies the image even when there is nothing to do
                shown = ImageOps.exif_transpose(image)
                notes.append(f"EXIF orientation {orientation} applied")
            bits = PILLOW_BITS.get(shown.mode, 8)
            grey = stored if shown is image and image.mode in PILLOW_GREY_MODES else _pillow_grey(shown, notes)
            pixels = grey.astype(np.float32)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise Reject("unreadable_image", scrub(exc)) from None
    low, high = check_pixels(pixels)
    return Decoded(pixels=pixels, notes=notes, bits_stored=bits, pixel_sha256=stored_hash, pixel_range=(low, high),
                   exif_orientation=int(orientation or 1))


def decode_any(path: Path, data: bytes, modalities: tuple[str, ...] | None) -> Decoded:
    """Dispatch on the suffix: PNG/JPEG/TIFF via Pillow, anything else (often no suffix at all) as DICOM.

    Decoder warnings (odd VRs, excess padding, ...) become notes on the image instead of console noise; a decoder's
    unforeseen error is a ``decode_error`` reject. Patient values are scrubbed from both.
    """
    import warnings

    patient: list[str] = []
    identifiers: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if path.suffix.lower() in IMAGE_SUFFIXES:
                decoded = decode_image(data)
            else:
                decoded = decode_dicom(data, modalities, patient=patient, identifiers=identifiers)
        except Reject as exc:
            exc.patient_tokens = tuple(identifiers)  # the file name of a reject is scrubbed too
            exc.detail = scrub_values(exc.detail, [*patient, *identifiers])  # it may quote a header value
            raise
        except Exception as exc:  # noqa: BLE001  a third-party decoder's unforeseen error is one reject
            reject = Reject("decode_error", scrub(exc, patient_values=patient))
            reject.patient_tokens = tuple(identifiers)
            raise reject from None
    decoded.patient_tokens = tuple(identifiers)
    decoded.notes = [scrub_values(note, [*patient, *identifiers]) for note in decoded.notes]
    for warning in caught[:3]:
        decoded.notes.append(f"decoder warning ({scrub(warning.message, patient_values=patient, with_type=False)[:120]})")
    return decoded


def header_reason(path: str, modalities: tuple[str, ...] | None) -> tuple[str, str] | None:
    """(reason, detail) when a file is plainly not a usable image from its header alone - not DICOM, cut before its
    pixels, no pixel data, or a Modality outside ``modalities`` - else None. Reads DICOM with
    ``stop_before_pixels`` (the whole file only when it has no pixel data) and other images' headers with Pillow, so
    files without a metadata row get the more basic reason first (they are never decoded)."""
    if Path(path).suffix.lower() in IMAGE_SUFFIXES:
        return _image_header_reason(path)
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with open(path, "rb") as fp:
            ds = pydicom.dcmread(fp, stop_before_pixels=True)
            stopped_at, size = fp.tell(), Path(path).stat().st_size
    except InvalidDicomError:
        return _decoded_reason(path, modalities)  # rare: the full read decides (no File Meta, or not DICOM)
    except (struct.error, EOFError, OSError, ValueError, TypeError, KeyError, IndexError, AttributeError):
        return _decoded_reason(path, modalities)
    if stopped_at >= size:  # nothing after the header: no pixel data (or cut before it)
        data = Path(path).read_bytes()
        reject = no_pixels_reason(data, _fresh(data) or ds)
        return reject.reason, scrub_values(reject.detail, [*patient_values(ds), *identifier_tokens(ds)])
    modality = _text(_get(ds, "Modality")).upper()
    if modalities is not None and modality and modality not in modalities:
        detail = f"Modality {modality!r} is not one of {list(modalities)}"
        return "wrong_modality", scrub_values(detail, [*patient_values(ds), *identifier_tokens(ds)])
    return None


def _decoded_reason(path: str, modalities: tuple[str, ...] | None) -> tuple[str, str] | None:
    """The reject a full DICOM read gives for a file whose header read failed, None when it reads."""
    try:
        read_dataset(Path(path).read_bytes(), [])
    except Reject as exc:
        return exc.reason, exc.detail
    except OSError as exc:
        return "unreadable", scrub(exc)
    return None


def _image_header_reason(path: str) -> tuple[str, str] | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path):  # lazy: reads the header only
            return None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        return "unreadable_image", scrub(exc)
