"""Writing small DICOM files with pydicom, for the decoding and adapter tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_dicom(path: Path, stored: np.ndarray, photometric: str = "MONOCHROME2", bits: int = 16, **attributes) -> Path:
    """An uncompressed DX image; ``attributes`` are extra DICOM keywords.

    ``stored`` is (rows, columns), or (frames, rows, columns) for a multi-frame object.
    """
    pydicom = __import__("pydicom")
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    dataset = pydicom.Dataset()
    dataset.file_meta = meta
    dataset.SOPClassUID, dataset.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    dataset.PatientID, dataset.Modality = "P1", "DX"
    if stored.ndim == 3:
        dataset.NumberOfFrames = stored.shape[0]
    dataset.Rows, dataset.Columns = stored.shape[-2:]
    dataset.SamplesPerPixel, dataset.PhotometricInterpretation = 1, photometric
    dataset.BitsAllocated, dataset.BitsStored, dataset.HighBit = bits, bits, bits - 1
    dataset.PixelRepresentation = 0
    for keyword, value in attributes.items():
        setattr(dataset, keyword, value)
    dataset.PixelData = stored.astype(np.uint16 if bits == 16 else np.uint8).tobytes()
    dataset.save_as(path, enforce_file_format=True)
    return path
