from pathlib import Path

import pytest

from cxrssl.data.manifest import Manifest, ManifestRow, read_manifest, write_manifest
from cxrssl.errors import ManifestError


def _write(folder: Path, text: str, images=("a.png", "b.png")) -> Path:
    for name in images:
        (folder / name).write_bytes(b"x")
    path = folder / "m.csv"
    path.write_text(text)
    return path


def test_reads_rows_relative_paths_and_extra_columns(tmp_path):
    path = _write(tmp_path, "path,patient_id,label,split,source\na.png,p1,NORMAL,train,x\nb.png,,PNEUMONIA,TEST,y\n")
    manifest = read_manifest(path)
    assert [row.path for row in manifest.rows] == ["a.png", "b.png"]
    assert manifest.files == [tmp_path / "a.png", tmp_path / "b.png"]
    assert manifest.splits == ["train", "test"]  # split names are case-insensitive
    assert manifest.rows[1].extra == {"source": "y"}
    # an unknown patient is its own patient
    assert manifest.patient_keys == ["p1", "image:b.png"]


def test_split_column_is_optional(tmp_path):
    manifest = read_manifest(_write(tmp_path, "path,patient_id,label\na.png,p1,\n"))
    assert manifest.splits == [""]


@pytest.mark.parametrize(
    "text, message",
    [
        ("path,label\na.png,X\n", "missing column 'patient_id'"),
        ("path,patient_id,label\n", "has no rows"),
        ("path,patient_id,label\na.png,p1,X\na.png,p2,Y\n", "listed twice (lines 2 and 3)"),
        ("path,patient_id,label\nc.png,p1,X\n", "line 2 points at 'c.png', which is not a file"),
        ("path,patient_id,label,split\na.png,p1,X,holdout\n", "split 'holdout'"),
        ("path,patient_id,label\n,p1,X\n", "empty path"),
        ("path,patient_id,label\na.png,p1,X,extra\n", "more fields than the header"),
    ],
)
def test_bad_manifests_give_one_line_naming_the_file(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(ManifestError) as caught:
        read_manifest(path)
    assert message in str(caught.value)
    assert str(path) in str(caught.value)
    assert "\n" not in str(caught.value)


def test_missing_file_and_folder_instead_of_file(tmp_path):
    with pytest.raises(ManifestError, match="no such manifest file"):
        read_manifest(tmp_path / "nope.csv")
    with pytest.raises(ManifestError, match="is a folder"):
        read_manifest(tmp_path)


def test_missing_files_counted(tmp_path):
    path = _write(tmp_path, "path,patient_id,label\nx.png,p,A\ny.png,p,A\nz.png,p,A\n", images=())
    with pytest.raises(ManifestError, match=r"\(and 2 more\)"):
        read_manifest(path)
    assert len(read_manifest(path, check_files=False)) == 3


def test_write_then_read_round_trip(tmp_path):
    (tmp_path / "a,b.png").write_bytes(b"x")
    rows = [ManifestRow("a,b.png", "p,1", "NORMAL", "val", {"source": "s"})]
    path = write_manifest(Manifest(rows, tmp_path), tmp_path / "out.csv")
    again = read_manifest(path)
    assert again.rows == rows
    assert again.rows[0].extra == {"source": "s"}
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write cleaned up


def test_writing_elsewhere_keeps_pointing_at_the_same_images(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.png").write_bytes(b"x")
    manifest = Manifest([ManifestRow("a.png", "p1", "A")], tmp_path / "data")
    moved = read_manifest(write_manifest(manifest, tmp_path / "runs" / "r1" / "m.csv"))
    assert moved.files[0].resolve() == (tmp_path / "data" / "a.png").resolve()


def test_a_manifest_knows_the_file_it_was_read_from(tmp_path):
    path = _write(tmp_path, "path,patient_id,label\na.png,p1,NORMAL\nb.png,p2,PNEUMONIA\n")
    manifest = read_manifest(path, check_files=False)
    assert manifest.path == path and manifest.name == str(path)
    assert manifest.select([1]).path == path and manifest.with_splits(["train", "test"]).path == path
