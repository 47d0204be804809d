"""Any folder of images: one sub-folder per class, or (``--unlabelled``) just images.

Expected layout::

    ROOT/<class name>/**/<image>     e.g. ROOT/Normal/a.png, ROOT/Pneumonia/site2/b.dcm
    ROOT/**/<image>                  with --unlabelled (a pretext pool, e.g. a DICOM export)

Images: PNG, JPEG, TIFF, BMP and DICOM (``.dcm``). There are no patient ids in a bare
folder, so each image is its own patient; when several images share a patient, write
a manifest with ``patient_id`` instead (or use the ``csv`` adapter) so splits keep
them together.
"""

from __future__ import annotations

from pathlib import Path

from cxrssl.data.adapters.common import IndexOptions, IndexResult, LayoutError, find_images, finish, require_folder
from cxrssl.data.manifest import ManifestRow

LAYOUT = "a folder with one sub-folder of images per class (or any images, with --unlabelled)"
NO_PATIENT_NOTE = "no patient ids in a bare folder: each image is its own patient"


def index_folder(root: Path, options: IndexOptions) -> IndexResult:
    require_folder(root, LAYOUT)
    if options.unlabelled:
        rows = [ManifestRow(image.relative_to(root).as_posix()) for image in find_images(root)]
        notes = ["unlabelled: every image below ROOT", NO_PATIENT_NOTE]
    else:
        classes = sorted(path for path in root.iterdir() if path.is_dir() and not path.name.startswith("."))
        rows = [ManifestRow(image.relative_to(root).as_posix(), label=folder.name) for folder in classes for image in find_images(folder)]
        notes = [f"classes: {', '.join(folder.name for folder in classes)}", NO_PATIENT_NOTE]
    if not rows:
        raise LayoutError(f"{root}: no image files found; expected {LAYOUT}")
    return finish(root, rows, [], notes, "the folder")
