import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from cxrssl.cli import main
from cxrssl.data.cache import INFO, MANIFEST, PIXELS, build_cache, open_cache
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


@pytest.fixture
def cache(tmp_path, phantom_manifest):
    """A complete 32 px cache of the phantoms."""
    build_cache(read_manifest(phantom_manifest), tmp_path / "cache", 32, workers=1, progress=False)
    return tmp_path / "cache"


def _one_line_error(folder, match: str) -> str:
    with pytest.raises(ManifestError, match=match) as caught:
        open_cache(folder)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_a_row_removed_from_the_caches_manifest_is_refused(cache, phantom_manifest):
    lines = (cache / MANIFEST).read_text().splitlines(keepends=True)
    (cache / MANIFEST).write_text("".join(lines[:5] + lines[6:]))
    message = _one_line_error(cache, "manifest.csv: was changed after the cache was built")
    assert message.startswith(str(cache / MANIFEST))
    assert f"`cxrssl cache {phantom_manifest} -o {cache} --size 32` rebuilds it in place, or give another -o folder" in message


def test_replaced_pixels_are_refused(cache):
    pixels = np.fromfile(cache / PIXELS, dtype=np.uint8)
    (255 - pixels).tofile(cache / PIXELS)  # same size, other pictures
    assert _one_line_error(cache, "was changed after the cache was built").startswith(str(cache / PIXELS))


def test_a_large_cache_is_digested_by_sampled_blocks_plus_its_size(cache, monkeypatch):
    from cxrssl.data import cache as cache_module

    (cache / INFO).unlink()
    monkeypatch.setattr(cache_module, "FULL_DIGEST_BYTES", 4096)  # the 48 x 32 x 32 pixels (49,152 bytes) are "large" now
    monkeypatch.setattr(cache_module, "SAMPLED_BLOCKS", 4)
    monkeypatch.setattr(cache_module, "BLOCK_BYTES", 1024)
    build_cache(read_manifest(cache / MANIFEST, check_files=False), cache.parent / "sampled", 32, workers=1, progress=False)
    sampled = cache.parent / "sampled"
    assert len(open_cache(sampled)) == 48
    pixels = np.fromfile(sampled / PIXELS, dtype=np.uint8)
    size = pixels.size
    first, last = 0, size - 1024  # the first and last blocks are always sampled
    unsampled = size // 6  # between the first block (0..1023) and the second (16,042..17,065)
    changed = pixels.copy()
    changed[unsampled] ^= 0xFF
    changed.tofile(sampled / PIXELS)
    assert len(open_cache(sampled)) == 48  # what sampling does not see: documented in the module
    for offset in (first, last + 500):
        changed = pixels.copy()
        changed[offset] ^= 0xFF
        changed.tofile(sampled / PIXELS)
        _one_line_error(sampled, "pixels.u8: was changed after the cache was built")


@pytest.mark.parametrize(
    "change",
    [
        {"count": 47},
        {"count": 0},
        {"count": -48},
        {"size": 0},
        {"size": 31},
        {"count": True},
        {"size": "32"},
        {"count": 48.0},
        {"count": 10**30},
        {"size": None},
        {"dtype": "float32"},
        {"digests": {}},
        {"digests": {"manifest.csv": "ab", "pixels.u8": 3}},
    ],
)
def test_values_that_size_the_memory_map_are_checked_against_the_pixels_file(cache, change):
    info = json.loads((cache / INFO).read_text())
    (cache / INFO).write_text(json.dumps({**info, **change}))
    _one_line_error(cache, "cache.json|pixels.u8")


def test_a_build_that_fails_halfway_is_not_a_cache_and_a_rerun_completes_it(tmp_path, phantom_manifest, monkeypatch):
    from cxrssl.data import io as io_module

    manifest = read_manifest(phantom_manifest)
    real, calls = io_module.decode_square, []

    def failing(task):
        calls.append(task)
        if len(calls) == 20:
            raise RuntimeError("decoder crashed")
        return real(task)

    monkeypatch.setattr(io_module, "decode_square", failing)
    with pytest.raises(RuntimeError, match="decoder crashed"):
        build_cache(manifest, tmp_path / "cache", 32, workers=1, progress=False)
    assert not (tmp_path / "cache" / INFO).exists()
    with pytest.raises(ManifestError, match="not a complete cxrssl cache"):
        open_image_set(tmp_path / "cache", 32)
    monkeypatch.setattr(io_module, "decode_square", real)
    summary = build_cache(manifest, tmp_path / "cache", 32, workers=1, progress=False)
    assert not summary.reused and summary.images == len(manifest)
    decoded = load_square_images(manifest.files, 32, workers=1, progress=False)
    assert np.array_equal(np.asarray(open_cache(tmp_path / "cache").pixels), decoded.pixels)


def test_leftovers_of_a_killed_build_do_not_block_the_rerun(tmp_path, phantom_manifest):
    folder = tmp_path / "cache"
    folder.mkdir()
    for name in ("pixels.u8.partial", "manifest.csv", ".cache.json.abc123.tmp", ".cxrssl-output.json", ".lock"):
        (folder / name).write_bytes(b"half")
    assert build_cache(read_manifest(phantom_manifest), folder, 32, workers=1, progress=False).images == 48
    assert len(open_cache(folder)) == 48
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ManifestError, match="is not empty and is not a cxrssl cache"):
        build_cache(read_manifest(phantom_manifest), tmp_path / "other", 32, workers=1, progress=False)


def test_the_cache_verbs_rerun_rebuilds_a_damaged_cache_in_place(cache, phantom_manifest):
    (cache / MANIFEST).write_text((cache / MANIFEST).read_text().replace("patient", "Patient", 1))
    summary = build_cache(read_manifest(phantom_manifest), cache, 32, workers=1, progress=False)
    assert not summary.reused and "manifest.csv: was changed after the cache was built" in summary.rebuilt
    assert len(open_cache(cache)) == 48
    assert build_cache(read_manifest(phantom_manifest), cache, 32, workers=1, progress=False).reused


def test_the_pixels_file_is_allocated_before_decoding_and_a_full_disk_is_one_line(tmp_path, phantom_manifest, monkeypatch):
    import errno
    import os

    from cxrssl.data import io as io_module

    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "posix_fallocate", no_space, raising=False)
    monkeypatch.setattr(io_module, "decode_square", lambda task: pytest.fail("decoded before the space was allocated"))
    with pytest.raises(
        ManifestError, match=r"pixels.u8.partial: cannot allocate 0.00 GiB for 48 images at 32 px \(No space left on device\); free disk space"
    ) as caught:
        build_cache(read_manifest(phantom_manifest), tmp_path / "cache", 32, workers=1, progress=False)
    assert "\n" not in str(caught.value)
    assert list((tmp_path / "cache").iterdir()) == []  # nothing half-made is left


def test_without_posix_fallocate_the_space_is_written(tmp_path, phantom_manifest, monkeypatch):
    import os

    from cxrssl.data import cache as cache_module

    sizes = []
    real = cache_module.decode_into

    def watching(pixels, *args, **kwargs):
        sizes.append(os.stat(tmp_path / "cache" / "pixels.u8.partial").st_blocks * 512)  # really on disk, not sparse
        return real(pixels, *args, **kwargs)

    monkeypatch.delattr(os, "posix_fallocate", raising=False)
    monkeypatch.setattr(cache_module, "decode_into", watching)
    assert build_cache(read_manifest(phantom_manifest), tmp_path / "cache", 32, workers=1, progress=False).images == 48
    assert sizes[0] >= 48 * 32 * 32


def test_a_damaged_unreadable_list_is_one_line(cache):
    (cache / "unreadable.csv").write_text("file,why\nx.png,broken\n")
    _one_line_error(cache, "unreadable.csv: is not a list of unreadable images")


class Blob(bytes):
    """Bytes that print short, so a falsifying example stays readable."""

    def __repr__(self):
        return f"<{len(self)} bytes>"


@pytest.fixture(scope="module")
def built_cache(tmp_path_factory):
    from cxrssl.data.phantom import write_phantom_dataset

    folder = tmp_path_factory.mktemp("fuzzed-cache")
    manifest = read_manifest(write_phantom_dataset(folder / "phantoms", n=6, size=32, seed=1, progress=False))
    build_cache(manifest, folder / "cache", 16, workers=1, progress=False)
    return folder / "cache", Blob((folder / "cache" / INFO).read_bytes())


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)


@settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(
    flips=st.lists(st.tuples(st.integers(0, 1 << 12), st.integers(0, 255)), max_size=8),
    cut=st.one_of(st.none(), st.integers(0, 600)),
    replaced=st.one_of(st.none(), st.sampled_from(["format", "size", "count", "dtype", "manifest", "manifest_sha256", "digests"])),
    value=json_values,
    whole=st.one_of(st.none(), json_values),
)
def test_a_damaged_cache_json_is_one_line_never_a_traceback(built_cache, flips, cut, replaced, value, whole):
    folder, good = built_cache
    if whole is not None:
        data = json.dumps(whole).encode()
    elif replaced is not None:
        data = json.dumps({**json.loads(good), replaced: value}).encode()
    else:
        mutable = bytearray(good)
        for position, byte in flips:
            mutable[position % len(mutable)] = byte
        data = bytes(mutable[:cut] if cut is not None else mutable)
    (folder / INFO).write_bytes(data)
    try:
        try:
            images = open_cache(folder)
        except ManifestError as error:
            assert "\n" not in str(error) and str(folder) in str(error)
            return
        assert json.loads(data) == json.loads(good) or replaced == "manifest"  # the cache opens only with its own record
        assert images.pixels.shape == (6, 16, 16)
    finally:
        (folder / INFO).write_bytes(good)


def test_reuse_cache_finds_only_an_intact_cache_of_the_same_manifest_and_size(tmp_path, phantom_manifest):
    from cxrssl.data.cache import reuse_cache

    manifest = read_manifest(phantom_manifest)
    assert reuse_cache(manifest, tmp_path / "cache", 32) is None  # nothing there yet
    build_cache(manifest, tmp_path / "cache", 32, workers=1, progress=False)
    found = reuse_cache(manifest, tmp_path / "cache", 32)
    assert found.reused and found.images == 48 and found.size == 32
    with pytest.raises(ManifestError, match="already holds a cache of another manifest or size"):
        reuse_cache(manifest, tmp_path / "cache", 48)
    (tmp_path / "cache" / PIXELS).write_bytes(b"\0" * (48 * 32 * 32))
    assert reuse_cache(manifest, tmp_path / "cache", 32) is None  # damaged: to be rebuilt


def test_a_damaged_cache_beside_a_file_of_the_users_is_rebuilt_in_place_and_the_file_stays(tmp_path, phantom_manifest):
    from cxrssl.data.cache import build_cache
    from cxrssl.data.manifest import read_manifest

    manifest = read_manifest(phantom_manifest)
    folder = tmp_path / "cache"
    build_cache(manifest, folder, 32, workers=1, progress=False)
    lines = (folder / "manifest.csv").read_text().splitlines()
    (folder / "manifest.csv").write_text("\n".join(lines[:4] + lines[5:]) + "\n")  # a row removed by hand
    (folder / "notes.txt").write_text("mine")
    summary = build_cache(manifest, folder, 32, workers=1, progress=False)
    assert summary.rebuilt and not summary.reused and (folder / "notes.txt").read_text() == "mine"
    assert build_cache(manifest, folder, 32, workers=1, progress=False).reused  # whole again
