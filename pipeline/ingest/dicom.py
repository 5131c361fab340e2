"""Decode one DICOM (or PNG/JPEG) file the way a radiology viewer does, or say why it cannot be used.

Order (PITFALLS.md): pixel data (every transfer syntax the installed pydicom plugins decode; first frame of a
multi-frame) -> RGB to grey -> Modality LUT (RescaleSlope/Intercept) -> VOI LUT or window (skipped when the width
is <= 0) -> MONOCHROME1 inverted so bright = dense. A constant result is rejected: some JPEG 2000 files decode to
zeros without an error (pydicom#966). Spacing comes from PixelSpacing, else ImagerPixelSpacing (CR).
"""

from __future__ import annotations

import hashlib
import math
import re
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


_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"|b'[^']*'")


def scrub(error: object, *, with_type: bool = True, limit: int = 200) -> str:
    """An exception or warning as text without quoted values: decoders quote element values (a patient name with a
    bad character, say) and these messages end up in rejects.csv and the manifest."""
    text = _QUOTED.sub("'...'", str(error))[:limit]
    return f"{type(error).__name__}: {text}" if with_type else text


class Reject(Exception):
    """A file that cannot be ingested; ``reason`` is a short code, ``detail`` says what was seen."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


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


# Uncompressed little-endian syntaxes whose single-frame unsigned pixels are a plain buffer (see _native_pixels)
_NATIVE_SYNTAXES = ("1.2.840.10008.1.2", "1.2.840.10008.1.2.1")
_RLE_LOSSLESS = "1.2.840.10008.1.2.5"


class _Header:
    """``ds.get(keyword)`` with each element converted once and without ``Dataset.__getitem__``: pydicom's item access
    costs 10-50 us a call (keyword lookup, tag comparisons, DS/IS conversion) and decoding reads about 30 elements,
    some several times. Raw elements are converted as ``__getitem__`` would (same character set), not stored back."""

    def __init__(self, ds) -> None:
        from pydicom.dataelem import RawDataElement, convert_raw_data_element

        self.ds = ds
        self._values: dict[str, object] = {}
        self._raw_type, self._convert = RawDataElement, convert_raw_data_element
        self._encoding = getattr(ds, "_character_set", None)

    def get(self, keyword: str, default: object = None) -> object:
        value = self._values.get(keyword, _MISSING)
        if value is _MISSING:
            value = self._read(_tag(keyword))
            self._values[keyword] = value
        return default if value is _ABSENT else value

    def _read(self, tag: int) -> object:
        element = self.ds.get_item(tag)
        if element is None:
            return _ABSENT
        if isinstance(element, self._raw_type):
            if (element.VR or _dictionary_vr(tag)) == "DS":
                numbers = decimal_strings(element.value)
                if numbers is not None:
                    return numbers
            if self._encoding is None:  # an unexpected pydicom: its own (slower) conversion
                return self.ds[tag].value
            element = self._convert(element, encoding=self._encoding, ds=self.ds)
        return element.value

    def __contains__(self, keyword: str) -> bool:
        return self.ds.get_item(_tag(keyword)) is not None


_MISSING, _ABSENT = object(), object()
_TAGS: dict[str, int] = {}
_VRS: dict[int, str] = {}
_DECIMAL_STRING = re.compile(rb"[0-9+\-.eE \\\x00]+")


def decimal_strings(raw: bytes | None) -> float | list[float] | None:
    """A DS (decimal string) value as pydicom's ``DSfloat`` reads it, one float or a list for several; None, leaving
    it to pydicom, for anything but plain numbers. pydicom's DS conversion and validation cost ~20 us an element,
    and decoding reads up to six (rescale, window, spacing): 7% of an image's ingest."""
    if not raw or not _DECIMAL_STRING.fullmatch(raw):
        return None
    parts = raw.split(b"\\")
    if any(len(part) > 16 for part in parts):  # over DS's 16 bytes: pydicom warns, and the warning becomes a note
        return None
    try:
        numbers = [float(part.strip(b" \x00")) for part in parts]
    except ValueError:  # an empty value between backslashes, a lone sign or exponent: pydicom's rules apply
        return None
    return numbers[0] if len(numbers) == 1 else numbers


def _dictionary_vr(tag: int) -> str:
    if tag not in _VRS:
        from pydicom.datadict import dictionary_VR

        try:
            _VRS[tag] = dictionary_VR(tag)
        except KeyError:
            _VRS[tag] = ""
    return _VRS[tag]


def _tag(keyword: str) -> int:
    if keyword not in _TAGS:
        from pydicom.datadict import tag_for_keyword

        _TAGS[keyword] = tag_for_keyword(keyword)
    return _TAGS[keyword]


def pixel_hash(arr: np.ndarray) -> str:
    digest = hashlib.sha256(f"{arr.dtype.str}{arr.shape}".encode())
    digest.update(np.ascontiguousarray(arr).data)
    return digest.hexdigest()


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return "\\".join(str(v) for v in value)
    return str(value).strip()


def _spacing(h: _Header) -> tuple[float, str]:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        value = h.get(keyword)
        if value is None:
            continue
        try:
            numbers = [float(v) for v in (value if hasattr(value, "__len__") and not isinstance(value, str) else [value])]
        except (TypeError, ValueError):
            continue
        if numbers and all(n > 0 and math.isfinite(n) for n in numbers):
            return float(numbers[0]), keyword
    return math.nan, "none"


def _unsigned_grey_layout(h: _Header) -> tuple[int, int, int, int, bytes] | None:
    """(BitsAllocated, BitsStored, Rows, Columns, PixelData) of a single-sample unsigned 8/16-bit image whose pixel
    data is a byte string, the case the fast paths below handle; None for anything else."""
    if h.get("PixelRepresentation") != 0 or h.get("SamplesPerPixel") != 1:
        return None
    bits, stored, rows, cols = (h.get(k) for k in ("BitsAllocated", "BitsStored", "Rows", "Columns"))
    data = h.get("PixelData")
    if bits not in (8, 16) or not isinstance(data, bytes):
        return None
    if not all(isinstance(v, int) and v > 0 for v in (stored, rows, cols)) or stored > bits:
        return None
    return bits, stored, rows, cols, data


def _as_stored(buffer: bytes | bytearray, bits: int, stored: int, rows: int, cols: int) -> np.ndarray | None:
    """Little-endian unsigned pixels as ``pixel_array`` gives them; None when bits above BitsStored are set, where
    pydicom and a plain view could differ."""
    arr = np.frombuffer(buffer, dtype="<u2" if bits == 16 else "u1", count=rows * cols).reshape(rows, cols)
    if stored < bits and int(arr.max()) >= 1 << stored:
        return None
    return arr.astype(arr.dtype.newbyteorder("="), copy=False)


def _native_pixels(h: _Header, transfer_syntax: str) -> np.ndarray | None:
    """The pixels of an uncompressed single-frame unsigned 8/16-bit greyscale image read straight from the buffer;
    None where pydicom's decoders must do it. Equal to ``ds.pixel_array`` (tested), at a fifth of its cost."""
    layout = _unsigned_grey_layout(h) if transfer_syntax in _NATIVE_SYNTAXES else None
    if layout is None:
        return None
    bits, stored, rows, cols, data = layout
    length = rows * cols * bits // 8
    return _as_stored(data, bits, stored, rows, cols) if len(data) in (length, length + 1) else None


def _rle_pixels(h: _Header, transfer_syntax: str) -> np.ndarray | None:
    """The pixels of a single-frame unsigned 8/16-bit greyscale RLE Lossless image, decoded by pylibjpeg-rle (the
    decoder pydicom's ``pixel_array`` uses for it) without pydicom's bookkeeping around it (0.2 ms an image); None
    where pydicom must do it. Equal to ``ds.pixel_array`` (tested)."""
    layout = _unsigned_grey_layout(h) if transfer_syntax == _RLE_LOSSLESS else None
    if layout is None:
        return None
    bits, stored, rows, cols, data = layout
    try:
        from pydicom.encaps import generate_frames
        from rle.utils import decode_pixel_data
    except ImportError:  # pylibjpeg-rle missing: pydicom's own RLE decoder
        return None
    try:
        frame = next(generate_frames(data, number_of_frames=1))
        decoded = decode_pixel_data(frame, version=2, rows=rows, columns=cols, bits_allocated=bits, byteorder="<")
    except (ValueError, StopIteration, TypeError):  # pydicom decides, and words the error
        return None
    return _as_stored(decoded, bits, stored, rows, cols) if len(decoded) == rows * cols * bits // 8 else None


def _first_frame(h: _Header, notes: list[str], transfer_syntax: str) -> np.ndarray:
    from pydicom.pixels import pixel_array

    frames = int(h.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        notes.append(f"multi-frame ({frames} frames): first frame used")
        return pixel_array(h.ds, index=0)
    fast = _native_pixels(h, transfer_syntax)
    if fast is None:
        fast = _rle_pixels(h, transfer_syntax)
    return fast if fast is not None else h.ds.pixel_array


def _first_number(value: object) -> float:
    return float(value[0] if hasattr(value, "__len__") and not isinstance(value, str) else value)


def _modality(arr: np.ndarray, h: _Header) -> np.ndarray:
    """Rescale slope/intercept in float32 (the common case); pydicom's apply_modality_lut for a Modality LUT."""
    from pydicom.pixels import apply_modality_lut

    if "ModalityLUTSequence" in h or "RescaleSlope" not in h:
        return apply_modality_lut(arr, h.ds)
    slope, intercept = float(h.get("RescaleSlope")), float(h.get("RescaleIntercept", 0.0) or 0.0)
    out = arr.astype(np.float32)
    if slope != 1.0:
        out *= np.float32(slope)
    if intercept != 0.0:
        out += np.float32(intercept)
    return out


def _voi(arr: np.ndarray, h: _Header, notes: list[str]) -> np.ndarray:
    """VOI LUT or window. A LINEAR window (the common case) is computed here in float32, scaled to [0, 1]
    (DICOM PS3.3 C.11.2.1.2.1; the output range does not matter, the cache rescales per image); anything else
    (VOI LUT sequences, SIGMOID, LINEAR_EXACT) goes to pydicom's ``apply_voi_lut``."""
    from pydicom.pixels import apply_voi_lut

    if "VOILUTSequence" not in h:
        if h.get("WindowWidth") is None or h.get("WindowCenter") is None:
            return arr
        try:
            center, width = _first_number(h.get("WindowCenter")), _first_number(h.get("WindowWidth"))
        except (TypeError, ValueError, IndexError):
            notes.append("WindowCenter/WindowWidth unreadable: window ignored")
            return arr
        if width <= 0:  # apply_voi_lut raises on width <= 0 (pydicom#1073)
            notes.append(f"WindowWidth {width:g} <= 0: window ignored")
            return arr
        if str(h.get("VOILUTFunction", "LINEAR") or "LINEAR").upper() == "LINEAR":
            if width == 1:
                return (arr > center - 0.5).astype(np.float32)
            # one new array, then in place: the same float32 arithmetic as ((x - c') / w' + 0.5) without temporaries
            out = np.subtract(arr, np.float32(center - 0.5), dtype=np.float32)
            out /= np.float32(width - 1)
            out += np.float32(0.5)
            return np.clip(out, 0.0, 1.0, out=out)
    try:
        return apply_voi_lut(arr, h.ds, index=0, prefer_lut=True)
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        notes.append(f"VOI LUT/window not applied ({type(exc).__name__})")
        return arr


def to_grey(arr: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 luma of an RGB(A) array; other channel counts use their mean."""
    if arr.shape[-1] >= 3:
        return arr[..., 0] * 0.299 + arr[..., 1] * 0.587 + arr[..., 2] * 0.114
    return arr.mean(axis=-1)


def decode_dicom(data: bytes, modalities: tuple[str, ...] | None) -> Decoded:
    import io

    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(io.BytesIO(data))
    except InvalidDicomError as exc:
        raise Reject("not_dicom", scrub(exc)) from None
    except (OSError, EOFError, ValueError, TypeError, KeyError, IndexError, AttributeError, NotImplementedError) as exc:
        raise Reject("unreadable", scrub(exc)) from None
    h = _Header(ds)
    if "PixelData" not in h and "FloatPixelData" not in h and "DoubleFloatPixelData" not in h:
        raise Reject("no_pixel_data", f"SOP class {_text(h.get('SOPClassUID'))!s}")
    tags = {name: _text(h.get(name)) for name in TEXT_TAGS}
    transfer_syntax = str(ds.file_meta.get("TransferSyntaxUID", ""))
    modality = tags["Modality"].upper()
    if modalities is not None and modality and modality not in modalities:
        raise Reject("wrong_modality", f"Modality {modality!r} is not one of {list(modalities)}")
    notes: list[str] = []
    if not modality:
        notes.append("no Modality tag")
    try:
        arr = _first_frame(h, notes, transfer_syntax)
    except (ValueError, TypeError, RuntimeError, NotImplementedError, AttributeError, KeyError, IndexError,
            EOFError, OSError, MemoryError) as exc:
        message = str(exc).lower()
        truncated = any(k in message for k in ("less than expected", "truncat", "end of file", "buffer is too small"))
        kind = "truncated" if truncated else "decode_error"
        raise Reject(kind, scrub(exc)) from None
    stored_hash = pixel_hash(arr)
    photometric = tags["PhotometricInterpretation"].upper()
    if arr.ndim == 3:
        if int(h.get("SamplesPerPixel", 1) or 1) > 1:
            notes.append(f"{photometric or 'colour'} converted to grey")
            arr = to_grey(arr.astype(np.float32))
        else:
            raise Reject("not_2d", f"pixel array shape {arr.shape}")
    elif arr.ndim != 2:
        raise Reject("not_2d", f"pixel array shape {arr.shape}")
    elif photometric in ("PALETTE COLOR",):
        notes.append("palette colour image read as indices")
    if photometric.startswith("MONOCHROME"):
        arr = _voi(_modality(arr, h), h, notes)
    pixels = np.asarray(arr, dtype=np.float32)
    inverse_lut = _text(h.get("PresentationLUTShape")).upper() == "INVERSE"
    if photometric == "MONOCHROME1" or (photometric == "MONOCHROME2" and inverse_lut):
        pixels = _inverted(pixels)
        notes.append(f"{'MONOCHROME1' if photometric == 'MONOCHROME1' else 'Presentation LUT INVERSE'} inverted")
    low, high = check_pixels(pixels)
    spacing, spacing_source = _spacing(h)
    patient_id = _text(h.get("PatientID")) or None  # only ever stored as a salted hash (fields.patient_key)
    return Decoded(
        pixels=pixels, tags=tags, patient_id=patient_id, notes=notes, spacing_mm=spacing,
        spacing_source=spacing_source, transfer_syntax=transfer_syntax,
        bits_stored=int(h.get("BitsStored", 0) or 0), pixel_sha256=stored_hash, pixel_range=(low, high),
    )


def _inverted(pixels: np.ndarray) -> np.ndarray:
    """max + min - pixels (bright = dense for MONOCHROME1), in place when the array is ours to change."""
    total = pixels.max() + pixels.min()
    return np.subtract(total, pixels, out=pixels) if pixels.flags.writeable else total - pixels


def check_pixels(pixels: np.ndarray) -> tuple[np.float32, np.float32]:
    """Reject what cannot be an image; returns (min, max), which the cache scaling reuses instead of a second pass."""
    if pixels.ndim != 2 or min(pixels.shape) < 2:
        raise Reject("not_2d", f"pixel array shape {pixels.shape}")
    low, high = pixels.min(), pixels.max()
    if not (math.isfinite(low) and math.isfinite(high)):  # min/max propagate NaN: no separate isfinite pass
        raise Reject("non_finite", "NaN or infinite pixel values")
    if high == low:
        raise Reject("constant_image", f"every pixel is {float(low)!r} (a silent decoder failure?)")
    return low, high


def decode_image(data: bytes) -> Decoded:
    """A PNG/JPEG/TIFF (8 or 16 bit; colour converted to grey); metadata comes from the CSV."""
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            arr = np.asarray(image)
            mode = image.mode
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise Reject("unreadable_image", scrub(exc)) from None
    notes = []
    stored_hash = pixel_hash(arr)
    if arr.ndim == 3:
        notes.append(f"{mode} converted to grey")
        arr = to_grey(arr.astype(np.float32))
    pixels = arr.astype(np.float32)
    low, high = check_pixels(pixels)
    return Decoded(pixels=pixels, notes=notes, bits_stored=16 if high > 255 else 8, pixel_sha256=stored_hash,
                   pixel_range=(low, high))


def decode_any(path: Path, data: bytes, modalities: tuple[str, ...] | None) -> Decoded:
    """Dispatch on the suffix: PNG/JPEG/TIFF via Pillow, anything else (often no suffix at all) as DICOM.

    Decoder warnings (odd VRs, excess padding, ...) become notes on the image instead of console noise.
    """
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        decoded = decode_image(data) if path.suffix.lower() in IMAGE_SUFFIXES else decode_dicom(data, modalities)
    for warning in caught[:3]:
        decoded.notes.append(f"decoder warning ({scrub(warning.message, with_type=False)[:120]})")
    return decoded
