from pathlib import Path

import numpy as np
import pytest
from PIL import Image


@pytest.fixture
def make_image():
    """Write a small grey image at ``path`` (format from the suffix), creating folders."""

    def make(path: Path, value: int = 128) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((24, 20), value, np.uint8)).save(path)
        return path

    return make
