from pathlib import Path

import numpy as np
from PIL import Image

from cxrssl.data.adapters.common import IndexOptions
from cxrssl.data.adapters.manifest_csv import index_csv


def test_rows_that_leave_the_manifests_folder_are_listed_as_skipped(tmp_path):
    root = tmp_path / "data"
    root.mkdir()
    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / name)
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "outside.png")
    (root / "labels.csv").write_text(
        f"path,patient_id,label\na.png,p1,normal\n../outside.png,p2,normal\nb.png,p3,pneumonia\n{tmp_path / 'outside.png'},p4,normal\n"
    )
    result = index_csv(root / "labels.csv", IndexOptions())
    assert [row.path for row in result.manifest.rows] == ["a.png", "b.png"]
    assert [path for path, _ in result.skipped] == ["../outside.png", str(Path(tmp_path / "outside.png"))]
    assert all("leaves the manifest's folder" in reason for _, reason in result.skipped)
