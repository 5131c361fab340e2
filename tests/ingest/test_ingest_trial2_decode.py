"""Second new-user trial, decoding: a DICOM cut or corrupted before its pixel data is ``truncated`` (never
``no_pixel_data``), a complete non-image object is ``no_pixel_data`` naming its SOP class and Modality, and a blank
window is named as the cause of a ``constant_image``."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from pipeline.ingest.dicom import Reject, decode_dicom
from tests.helpers.ingest_factory import write_cxr


def _reject(data: bytes) -> Reject:
    with pytest.raises(Reject) as caught:
        decode_dicom(data, None)
    return caught.value


def _sr(path) -> bytes:
    """A complete Basic Text SR (no pixel data), with a content sequence last as real reports have."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.88.11"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.SOPClassUID, ds.SOPInstanceUID = "1.2.840.10008.5.1.4.1.1.88.11", ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientName = "SR", "Doe^John"
    item = Dataset()
    item.TextValue = "no focal consolidation"
    ds.ContentSequence = [item]
    ds.save_as(path, enforce_file_format=True)
    return path.read_bytes()


def _element_offsets(data: bytes) -> list[tuple[int, int]]:
    """(value start, declared length) of each top-level element pydicom reads from ``data``."""
    ds = pydicom.dcmread(io.BytesIO(data))
    return [(ds._dict[t].value_tell, ds._dict[t].length) for t in list(ds._dict) if hasattr(ds._dict[t], "value_tell")]


def test_every_cut_before_pixel_data_is_truncated_with_its_byte(tmp_path):
    write_cxr(tmp_path / "full.dcm", seed=1)
    data = (tmp_path / "full.dcm").read_bytes()
    pixel_start = data.index(b"\xe0\x7f\x10\x00")
    assert decode_dicom(data, None).pixels is not None
    for cut in range(140, pixel_start, 7):  # inside the File Meta, inside elements, at element boundaries
        reject = _reject(data[:cut])
        assert reject.reason == "truncated", (cut, reject.reason, reject.detail)
        assert "byte" in reject.detail and "pixel" in reject.detail, reject.detail


def test_corrupt_element_length_is_truncated_not_a_non_image(tmp_path):
    write_cxr(tmp_path / "full.dcm", seed=2)
    data = bytearray((tmp_path / "full.dcm").read_bytes())
    name_tag = data.index(b"\x10\x00\x10\x00PN")  # (0010,0010) PN, explicit VR: 2-byte length follows
    data[name_tag + 6: name_tag + 8] = (60000).to_bytes(2, "little")
    reject = _reject(bytes(data))
    assert reject.reason == "truncated"
    assert f"byte {name_tag + 8}" in reject.detail and "60000" in reject.detail, reject.detail
    assert "Doe" not in reject.detail


def test_complete_non_image_is_no_pixel_data_naming_sop_class_and_modality(tmp_path):
    reject = _reject(_sr(tmp_path / "report.dcm"))
    assert reject.reason == "no_pixel_data"
    assert "Basic Text SR Storage" in reject.detail and "Modality SR" in reject.detail, reject.detail


@pytest.mark.parametrize(("window", "side"), [((5000.0, 600.0), "above"), ((-3000.0, 400.0), "below")])
def test_constant_image_names_a_window_outside_the_values(tmp_path, window, side):
    write_cxr(tmp_path / "w.dcm", seed=3, bits_stored=12, window=window)  # stored values 0..4095
    reject = _reject((tmp_path / "w.dcm").read_bytes())
    assert reject.reason == "constant_image"
    assert f"entirely {side}" in reject.detail and "WindowCenter" in reject.detail, reject.detail
    assert "decoder failure" not in reject.detail


def test_constant_image_names_a_constant_stored_array(tmp_path):
    write_cxr(tmp_path / "c.dcm", seed=4)
    ds = pydicom.dcmread(tmp_path / "c.dcm")
    ds.PixelData = np.full((ds.Rows, ds.Columns), 7, dtype=np.uint16).tobytes()
    ds.save_as(tmp_path / "c.dcm")
    reject = _reject((tmp_path / "c.dcm").read_bytes())
    assert reject.reason == "constant_image"
    assert "every stored pixel value is 7" in reject.detail, reject.detail
