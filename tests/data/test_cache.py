import json

import numpy as np
import pytest
from PIL import Image

from cxrssl.cli import main
from cxrssl.data.cache import PIXELS, build_cache, open_cache
from cxrssl.data.images import open_image_set
from cxrssl.data.io import load_square_images
from cxrssl.data.manifest import read_manifest
from cxrssl.errors import ManifestError


def test_cache_holds_the_same_pixels_as_decoding_and_lists_unreadable(tmp_path, phantom_manifest):
    manifest = read_manifest(phantom_manifest)
    broken = manifest.files[5]
    original = broken.read_bytes()
    broken.write_bytes(original[:100])  # truncated
    try:
        summary = build_cache(manifest, tmp_path / "cache", 48, workers=2, progress=False)
        decoded = load_square_images(manifest.files, 48, workers=1, progress=False)
    finally:
        broken.write_bytes(original)
    assert summary.images == len(manifest) - 1 and summary.unreadable[0][0] == str(broken)
    cached = open_cache(tmp_path / "cache")
    assert np.array_equal(np.asarray(cached.pixels), decoded.pixels)
    assert [cached.manifest.resolve(row).resolve() for row in cached.manifest.rows] == [manifest.files[i].resolve() for i in decoded.kept]
    assert cached.unreadable == summary.unreadable


def test_batches_come_out_at_the_asked_size(tmp_path, phantom_manifest):
    build_cache(read_manifest(phantom_manifest), tmp_path / "cache", 64, workers=1, progress=False)
    same = open_image_set(tmp_path / "cache", 64)
    assert np.array_equal(same.batch([3, 1]).numpy(), np.asarray(same.pixels[[3, 1]]))
    smaller = open_image_set(tmp_path / "cache", 32).batch([0, 1, 2])
    assert smaller.shape == (3, 32, 32) and smaller.dtype.is_floating_point is False
    direct = load_square_images(read_manifest(phantom_manifest).files[:3], 32, workers=1, progress=False).pixels
    assert np.abs(smaller.numpy().astype(int) - direct.astype(int)).mean() < 3  # same picture, other resampler


def test_an_interrupted_build_is_never_read_as_a_cache(tmp_path, phantom_manifest):
    build_cache(read_manifest(phantom_manifest), tmp_path / "cache", 32, workers=1, progress=False)
    (tmp_path / "cache" / "cache.json").unlink()  # as if killed before the last step
    with pytest.raises(ManifestError, match="not a complete cxrssl cache"):
        open_image_set(tmp_path / "cache", 32)


def test_rebuilding_reuses_a_matching_cache_and_refuses_a_different_one(tmp_path, phantom_manifest):
    manifest = read_manifest(phantom_manifest)
    build_cache(manifest, tmp_path / "cache", 32, workers=1, progress=False)
    assert build_cache(manifest, tmp_path / "cache", 32, workers=1, progress=False).reused
    with pytest.raises(ManifestError, match="already holds a cache of another manifest or size"):
        build_cache(manifest, tmp_path / "cache", 48, workers=1, progress=False)


def test_a_truncated_pixel_file_is_detected(tmp_path, phantom_manifest):
    build_cache(read_manifest(phantom_manifest), tmp_path / "cache", 32, workers=1, progress=False)
    with open(tmp_path / "cache" / PIXELS, "r+b") as handle:
        handle.truncate(1000)
    with pytest.raises(ManifestError, match="rebuild the cache"):
        open_cache(tmp_path / "cache")


def test_cache_cli(tmp_path, phantom_manifest, capsys):
    assert main(["cache", str(phantom_manifest), "-o", str(tmp_path / "c"), "--size", "32", "--quiet"]) == 0
    assert "cached 48 images at 32x32" in capsys.readouterr().out
    assert json.loads((tmp_path / "c" / "cache.json").read_text())["count"] == 48
    assert main(["cache", str(phantom_manifest), "-o", str(tmp_path / "c"), "--size", "32", "--quiet"]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_a_folder_that_is_not_a_cache_is_refused_clearly(tmp_path):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(ManifestError, match="is a folder but not a complete cxrssl cache"):
        open_image_set(tmp_path, 32)
