"""What every adapter shares: ``finish`` keeps one row per image and lists what it dropped."""

from cxrssl.data.adapters.common import finish
from cxrssl.data.manifest import ManifestRow, read_manifest, write_manifest


def test_an_image_listed_twice_is_kept_once_and_listed_so_the_manifest_reads_back(tmp_path):
    for name in ("a.png", "b.png"):
        (tmp_path / name).write_bytes(b"not decoded by adapters")
    rows = [
        ManifestRow("a.png", "p1", "", "train"),
        ManifestRow("b.png", "p2", "", "train"),
        ManifestRow("a.png", "p1", "", "test"),
        ManifestRow("c.png", "p3", "", "test"),
    ]
    result = finish(tmp_path, rows, [], [], "train.csv and valid.csv")
    assert [(row.path, row.split) for row in result.manifest.rows] == [("a.png", "train"), ("b.png", "train")]
    assert result.skipped == [
        ("a.png", "listed again in train.csv and valid.csv; the first listing is kept"),
        ("c.png", f"listed in train.csv and valid.csv but not found under {tmp_path}"),
    ]
    assert len(read_manifest(write_manifest(result.manifest, tmp_path / "m.csv"))) == 2
