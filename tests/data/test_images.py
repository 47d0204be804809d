import numpy as np
import pytest

from cxrssl.data import images as images_module
from cxrssl.data.images import open_image_set
from cxrssl.data.manifest import read_manifest
from cxrssl.errors import CxrsslError


def test_a_manifest_is_decoded_in_its_row_order(phantom_manifest):
    manifest = read_manifest(phantom_manifest)
    images = open_image_set(phantom_manifest, 32, progress=False, rows=[5, 2, 9])
    assert [row.path for row in images.manifest.rows] == [manifest.rows[i].path for i in (5, 2, 9)]
    assert images.batch([0, 1, 2]).shape == (3, 32, 32)
    assert not np.array_equal(images.batch([0]), images.batch([1]))


@pytest.mark.parametrize("processes", [1, 4])
def test_a_set_too_large_for_memory_is_refused_before_decoding(phantom_manifest, monkeypatch, processes):
    count = len(read_manifest(phantom_manifest))
    needed = count * 64 * 64 * processes
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(processes))
    monkeypatch.setattr(images_module, "load_square_images", lambda *args, **kwargs: pytest.fail("decoded anyway"))
    # Just under what is needed, after the share kept back for the model.
    monkeypatch.setattr(images_module, "available_memory_bytes", lambda: int(needed / images_module.MEMORY_SHARE) - 1)
    with pytest.raises(CxrsslError) as caught:
        open_image_set(phantom_manifest, 64, progress=False)
    message = str(caught.value)
    assert message.startswith(str(phantom_manifest)) and f"its {count} images at 64 px" in message
    assert f"cxrssl cache {phantom_manifest} -o CACHE --size 64" in message
    assert ("one copy in each of its 4 processes" in message) == (processes == 4)


def test_a_set_that_fits_is_decoded(phantom_manifest, monkeypatch):
    count = len(read_manifest(phantom_manifest))
    monkeypatch.setattr(images_module, "available_memory_bytes", lambda: int(count * 32 * 32 / images_module.MEMORY_SHARE) + 1)
    assert len(open_image_set(phantom_manifest, 32, progress=False)) == count


def test_the_digest_follows_pixels_paths_order_and_size(phantom_manifest):
    images = open_image_set(phantom_manifest, 32, progress=False)
    again = open_image_set(phantom_manifest, 32, progress=False)
    assert images.digest == again.digest
    assert "digest" in images.__dict__  # computed once, then reused
    assert images.select([1, 0]).digest != images.select([0, 1]).digest
    assert open_image_set(phantom_manifest, 40, progress=False).digest != images.digest
    again.pixels[again.rows[0], 0, 0] ^= 1  # one pixel of one image
    del again.__dict__["digest"]
    assert again.digest != images.digest


def test_no_module_of_the_data_package_imports_inside_a_function():
    """Every dependency inside cxrssl.data is visible at the top of its module: no lazy import hides a circle."""
    import ast
    from pathlib import Path

    import cxrssl.data

    nested = []
    for path in sorted(Path(cxrssl.data.__file__).parent.rglob("*.py")):
        tree = ast.parse(path.read_text())
        top = {id(node) for node in tree.body} | {id(n) for node in tree.body if isinstance(node, ast.If) for n in node.body}  # `if TYPE_CHECKING:`
        nested += [f"{path.name}:{node.lineno}" for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top]
    assert nested == []


def test_the_cache_does_not_need_the_decoding_module():
    import subprocess
    import sys

    code = "import sys, cxrssl.data.cache; print('cxrssl.data.images' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
