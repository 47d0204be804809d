import numpy as np
import pytest

from cxrssl.data.adapters import IndexOptions, LayoutError, index_dataset
from cxrssl.data.manifest import read_manifest, write_manifest
from cxrssl.errors import ManifestError
from tests.dicom import write_dicom


def test_one_sub_folder_per_class_any_depth_dicom_included(tmp_path, make_image):
    pytest.importorskip("pydicom")
    make_image(tmp_path / "Normal" / "a.png")
    make_image(tmp_path / "Normal" / "site2" / "b.JPG")
    (tmp_path / "Pneumonia").mkdir()
    write_dicom(tmp_path / "Pneumonia" / "c.dcm", np.zeros((8, 8), np.uint16))
    make_image(tmp_path / "Normal" / ".hidden" / "d.png")
    (tmp_path / "Normal" / "notes.txt").write_text("not an image")
    result = index_dataset("folder", tmp_path)
    assert {(row.path, row.label) for row in result.manifest.rows} == {
        ("Normal/a.png", "Normal"),
        ("Normal/site2/b.JPG", "Normal"),
        ("Pneumonia/c.dcm", "Pneumonia"),
    }
    unlabelled = index_dataset("folder", tmp_path, IndexOptions(unlabelled=True))
    assert len(unlabelled.manifest) == 3 and {row.label for row in unlabelled.manifest.rows} == {""}


def test_an_empty_folder_is_refused(tmp_path):
    (tmp_path / "Normal").mkdir()
    with pytest.raises(LayoutError, match="no image files found"):
        index_dataset("folder", tmp_path)


def test_csv_adapter_validates_and_rebases(tmp_path, make_image):
    make_image(tmp_path / "data" / "x.png")
    (tmp_path / "data" / "m.csv").write_text("path,patient_id,label\nx.png,p1,Normal\n")
    result = index_dataset("csv", tmp_path / "data" / "m.csv")
    written = write_manifest(result.manifest, tmp_path / "out" / "m.csv")
    assert read_manifest(written).rows[0].path == "../data/x.png"
    (tmp_path / "data" / "bad.csv").write_text("path,patient_id,label\ny.png,p1,Normal\n")
    with pytest.raises(ManifestError, match="line 2 points at 'y.png'"):
        index_dataset("csv", tmp_path / "data" / "bad.csv")


def test_unknown_kind(tmp_path):
    with pytest.raises(LayoutError, match="unknown dataset kind 'mimic'; use one of chexpert, kermany"):
        index_dataset("mimic", tmp_path)
