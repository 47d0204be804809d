import io

import numpy as np
import pytest
from PIL import Image

from cxrssl.data.io import UnreadableImage, load_grayscale, load_square_images, square_resize
from tests.dicom import write_dicom

pytest.importorskip("pydicom")

RAMP = np.arange(64 * 64, dtype=np.uint16).reshape(64, 64)  # 0 .. 4095: a 12-bit ramp


def test_8_bit_png_and_jpeg_keep_their_grey_values(tmp_path):
    pixels = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (64, 1))
    Image.fromarray(pixels).save(tmp_path / "a.png")
    assert np.array_equal(load_grayscale(tmp_path / "a.png"), pixels)
    Image.fromarray(pixels).save(tmp_path / "a.jpg", quality=100)
    assert np.abs(load_grayscale(tmp_path / "a.jpg").astype(int) - pixels).max() <= 3


def test_16_bit_png_is_stretched_from_its_own_minimum_to_maximum(tmp_path):
    Image.fromarray((RAMP + 1000).astype(np.uint16)).save(tmp_path / "deep.png")
    decoded = load_grayscale(tmp_path / "deep.png")
    assert decoded.dtype == np.uint8 and decoded.min() == 0 and decoded.max() == 255
    assert np.all(np.diff(decoded.ravel().astype(int)) >= 0)  # the ramp stays a ramp


def test_colour_palette_and_alpha_images_become_grey(tmp_path):
    grey = np.full((8, 8), 200, np.uint8)
    Image.fromarray(np.stack([grey] * 3, -1)).save(tmp_path / "rgb.png")
    Image.fromarray(np.stack([grey] * 3 + [np.full_like(grey, 255)], -1)).save(tmp_path / "rgba.png")
    Image.fromarray(grey).convert("P").save(tmp_path / "palette.png")
    transparent = np.stack([grey] * 3 + [np.zeros_like(grey)], -1)
    Image.fromarray(transparent).save(tmp_path / "transparent.png")
    for name in ("rgb", "rgba", "palette"):
        assert np.array_equal(load_grayscale(tmp_path / f"{name}.png"), grey), name
    assert load_grayscale(tmp_path / "transparent.png").max() == 0  # composited on black


def test_dicom_rescale_and_window_map_to_the_documented_range(tmp_path):
    # Hounsfield-like values: stored 0..4095, slope 1, intercept -1024 -> -1024..3071.
    # Window centre 40, width 400 shows -160..240 from black to white.
    path = write_dicom(tmp_path / "w.dcm", RAMP, RescaleSlope=1, RescaleIntercept=-1024, WindowCenter=40, WindowWidth=400)
    decoded = load_grayscale(path)
    values = RAMP.astype(float) - 1024
    assert np.all(decoded[values <= -160.5] == 0) and np.all(decoded[values > 239.5] == 255)
    inside = (values > -150) & (values < 230)
    expected = np.round(((values[inside] - 39.5) / 399 + 0.5) * 255)
    assert np.abs(decoded[inside] - expected).max() <= 1


def test_dicom_without_window_is_stretched_and_monochrome1_is_inverted(tmp_path):
    plain = load_grayscale(write_dicom(tmp_path / "m2.dcm", RAMP))
    inverted = load_grayscale(write_dicom(tmp_path / "m1.dcm", RAMP, photometric="MONOCHROME1"))
    assert plain[0, 0] == 0 and plain[-1, -1] == 255
    assert np.array_equal(inverted, 255 - plain)  # air is dark in both


def test_dicom_voi_lut_sequence_is_applied(tmp_path):
    from pydicom.dataset import Dataset

    lut = Dataset()
    lut.LUTDescriptor = [4096, 0, 16]  # 4096 entries from stored value 0, 16-bit output
    lut.LUTData = (65535 - np.arange(4096) * 16).astype(np.uint16).tobytes()  # an inverting LUT
    path = write_dicom(tmp_path / "lut.dcm", RAMP, VOILUTSequence=[lut])
    decoded = load_grayscale(path)
    assert decoded[0, 0] == 255 and decoded[-1, -1] == 0  # 65535 - 4095 * 16 = 15 of 65535
    assert np.all(np.diff(decoded.ravel().astype(int)) <= 0)


def test_a_dicom_file_is_recognised_without_its_extension(tmp_path):
    path = write_dicom(tmp_path / "IM000001", RAMP)
    assert load_grayscale(path).shape == (64, 64)


def test_8_bit_dicom(tmp_path):
    stored = np.tile(np.arange(64, dtype=np.uint8) * 4, (64, 1))
    assert np.array_equal(load_grayscale(write_dicom(tmp_path / "8.dcm", stored, bits=8)), np.round(stored / 252 * 255).astype(np.uint8))


def _truncated(format_name: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (128, 128), dtype=np.uint8)).save(buffer, format=format_name)
    return buffer.getvalue()[: len(buffer.getvalue()) // 2]


@pytest.mark.parametrize(
    "name, make, reason",
    [
        ("truncated.png", lambda p: p.write_bytes(_truncated("PNG")), "cannot decode"),
        ("truncated.jpg", lambda p: p.write_bytes(_truncated("JPEG")), "cannot decode"),
        ("empty.png", lambda p: p.write_bytes(b""), "empty file"),
        ("text.png", lambda p: p.write_bytes(b"this is not an image at all\n" * 20), "cannot decode"),
        ("folder.png", lambda p: p.mkdir(), "is a folder"),
        ("missing.png", lambda p: None, "no such file"),
        ("broken.dcm", lambda p: p.write_bytes(b"\0" * 128 + b"DICM" + b"\x01" * 40), "DICOM"),
    ],
)
def test_corrupt_inputs_raise_unreadable_with_a_reason(tmp_path, name, make, reason):
    make(tmp_path / name)
    with pytest.raises(UnreadableImage, match=reason):
        load_grayscale(tmp_path / name)


def test_a_batch_with_corrupt_files_lists_them_and_keeps_the_rest(tmp_path):
    paths = []
    for i in range(70):  # over 64 files: the multi-process path
        path = tmp_path / f"{i:03d}.png"
        if i % 10 == 3:
            path.write_bytes(_truncated("PNG"))
        else:
            Image.fromarray(np.full((40, 60), 3 * i, np.uint8)).save(path)  # each file its own grey
        paths.append(path)
    loaded = load_square_images(paths, 32, workers=2, progress=False)
    assert len(loaded.unreadable) == 7 and all("cannot decode" in reason for _, reason in loaded.unreadable)
    assert loaded.pixels.shape == (63, 32, 32) and loaded.kept == [i for i in range(70) if i % 10 != 3]
    for row, index in enumerate(loaded.kept):  # rows packed in order, each from its own file
        assert np.array_equal(loaded.pixels[row], square_resize(np.full((40, 60), 3 * index, np.uint8), 32))


def test_declared_size_above_the_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    from cxrssl.data.io import UnreadableImage, load_grayscale
    from tests.dicom import write_dicom

    monkeypatch.setenv("CXRSSL_MAX_PIXELS", "1000")
    png16 = tmp_path / "wide16.png"
    Image.fromarray(np.zeros((40, 30), np.uint16)).save(png16)
    tiff = tmp_path / "big.tif"
    Image.fromarray(np.zeros((40, 30), np.uint8)).save(tiff)
    dicom = write_dicom(tmp_path / "big.dcm", RAMP[:40, :30])  # not constant: a constant DICOM is refused for that
    for path in (png16, tiff, dicom):
        with pytest.raises(UnreadableImage, match=r"1,200 pixels, above the decoding limit of 1,000 \(raise it with CXRSSL_MAX_PIXELS\)"):
            load_grayscale(path)
    monkeypatch.setenv("CXRSSL_MAX_PIXELS", "1200")
    assert load_grayscale(dicom).shape == (40, 30)


def test_a_dicom_that_declares_a_huge_size_is_refused_without_allocating_it(tmp_path):
    from cxrssl.data.io import UnreadableImage, load_grayscale
    from tests.dicom import write_dicom

    path = write_dicom(tmp_path / "liar.dcm", np.zeros((8, 8), np.uint16))
    import pydicom

    dataset = pydicom.dcmread(path)
    dataset.Rows, dataset.Columns = 20000, 20000  # 13 GB as float64 had it been decoded
    dataset.save_as(path)
    with pytest.raises(UnreadableImage, match="400,000,000 pixels, above the decoding limit"):
        load_grayscale(path)


@pytest.mark.parametrize(
    "attributes,valid,damaged",
    [
        ({"WindowCenter": "1234", "WindowWidth": "100"}, b"1234", b"ab.c"),
        ({"WindowCenter": "10", "WindowWidth": "0", "VOILUTFunction": "SIGMOID"}, None, None),
        ({"RescaleSlope": "4321", "RescaleIntercept": "0"}, b"4321", b"x.yz"),
    ],
    ids=["window-text", "sigmoid-width-0", "slope-text"],
)
def test_damaged_display_attributes_make_one_file_unreadable_not_the_command(tmp_path, attributes, valid, damaged):
    from cxrssl.data.io import UnreadableImage, decode_square, load_grayscale

    path = write_dicom(tmp_path / "damaged.dcm", np.arange(64, dtype=np.uint16).reshape(8, 8), **attributes)
    if valid:  # pydicom refuses to write a damaged value, so damage the bytes on disk
        path.write_bytes(path.read_bytes().replace(valid, damaged, 1))
    try:
        pixels = load_grayscale(path)
    except UnreadableImage as error:
        assert "damaged" in str(error) or "cannot parse" in str(error), error
        pixels = None
    if pixels is not None:  # a damage pydicom reads as some valid value must still give an image
        assert pixels.dtype == np.uint8 and pixels.shape == (8, 8)
    else:
        assert valid is not None  # the undamaged-but-odd sigmoid window (width 0) must decode
    result, reason = decode_square((str(path), 4))  # the worker function never raises
    assert (result is None) == bool(reason)


def test_plugin_advice_only_for_compressed_pixel_data(tmp_path):
    from cxrssl.data.io import UnreadableImage, load_grayscale
    from tests.dicom import write_dicom

    path = write_dicom(tmp_path / "short.dcm", np.zeros((8, 8), np.uint16))
    import pydicom

    dataset = pydicom.dcmread(path)
    dataset.PixelData = dataset.PixelData[:10]  # truncated, uncompressed
    dataset.save_as(path)
    with pytest.raises(UnreadableImage, match="cannot decode DICOM pixel data") as caught:
        load_grayscale(path)
    assert "pylibjpeg" not in str(caught.value)


def _write_odd_dicom(path, stored, **attributes):
    """``write_dicom`` for values pydicom writes but warns about (``nan``, ``inf``: not valid DS text)."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Invalid value for VR DS")
        return write_dicom(path, stored, **attributes)


def _stretched(values: np.ndarray) -> np.ndarray:
    """What the last display rule (the modality values' own min-max) gives."""
    values = values.astype(float)
    return np.round((values - values.min()) / (values.max() - values.min()) * 255).astype(np.uint8)


@pytest.mark.parametrize("function", ["LINEAR", "LINEAR_EXACT", "SIGMOID"])
@pytest.mark.parametrize(
    "center, width",
    [("nan", "400"), ("40", "nan"), ("inf", "400"), ("40", "inf"), ("40", "-inf"), ("40", "0"), ("40", "-5")],
)
def test_an_unusable_window_falls_back_to_the_min_max_of_the_modality_values(tmp_path, function, center, width):
    path = _write_odd_dicom(
        tmp_path / "w.dcm", RAMP, RescaleSlope=2, RescaleIntercept=-100, WindowCenter=center, WindowWidth=width, VOILUTFunction=function
    )
    assert np.array_equal(load_grayscale(path), _stretched(RAMP * 2.0 - 100))


def test_linear_windows_narrower_than_one_are_not_used_as_the_standard_requires(tmp_path):
    path = write_dicom(tmp_path / "w.dcm", RAMP, WindowCenter="2000", WindowWidth="0.5")
    assert np.array_equal(load_grayscale(path), _stretched(RAMP))  # not a black-and-white threshold image


def test_the_first_usable_window_of_several_is_used(tmp_path):
    several = _write_odd_dicom(tmp_path / "several.dcm", RAMP, WindowCenter=["nan", "40", "3000"], WindowWidth=["400", "0", "1000"])
    only_third = write_dicom(tmp_path / "third.dcm", RAMP, WindowCenter="3000", WindowWidth="1000")
    expected = load_grayscale(only_third)
    assert np.array_equal(load_grayscale(several), expected)
    assert expected.min() == 0 and expected.max() == 255 and not np.array_equal(expected, _stretched(RAMP))


def test_a_window_that_shows_one_flat_grey_falls_back_too(tmp_path):
    path = write_dicom(tmp_path / "off.dcm", RAMP, WindowCenter="60000", WindowWidth="100")  # far above every value: all black
    assert np.array_equal(load_grayscale(path), _stretched(RAMP))


@pytest.mark.parametrize("attributes", [{}, {"WindowCenter": "40", "WindowWidth": "400"}, {"RescaleSlope": 3, "RescaleIntercept": 7}])
def test_a_constant_dicom_is_unreadable_not_a_made_up_film(tmp_path, attributes):
    from cxrssl.data.io import decode_square

    path = write_dicom(tmp_path / "flat.dcm", np.full((16, 16), 500, np.uint16), **attributes)
    with pytest.raises(UnreadableImage, match="constant image: every pixel is"):
        load_grayscale(path)
    pixels, reason = decode_square((str(path), 8))
    assert pixels is None and reason.startswith("constant image")


def test_a_multi_frame_dicom_is_refused_with_the_reason(tmp_path):
    from cxrssl.data.io import decode_square

    frames = np.stack([RAMP, RAMP[::-1], RAMP.T])
    path = write_dicom(tmp_path / "series.dcm", frames)
    with pytest.raises(UnreadableImage, match=r"multi-frame DICOM \(3 frames\).*export that frame as a file of its own"):
        load_grayscale(path)
    pixels, reason = decode_square((str(path), 8))
    assert pixels is None and "multi-frame" in reason
    single = write_dicom(tmp_path / "one.dcm", RAMP[None])  # Number of Frames 1 is a single film
    assert load_grayscale(single).shape == RAMP.shape


def test_without_pydicom_a_dicom_is_unreadable_naming_the_extra(tmp_path, monkeypatch):
    import sys

    path = write_dicom(tmp_path / "x.dcm", RAMP)
    monkeypatch.setitem(sys.modules, "pydicom", None)  # import pydicom now fails
    with pytest.raises(UnreadableImage, match=r'is DICOM: reading DICOM files needs pydicom.*pip install "cxrssl\[dicom\]"'):
        load_grayscale(path)


def test_a_rescale_that_gives_non_finite_values_is_unreadable(tmp_path):
    path = _write_odd_dicom(tmp_path / "slope.dcm", RAMP, RescaleSlope="inf", RescaleIntercept="0")
    with pytest.raises(UnreadableImage, match="not finite"):
        load_grayscale(path)


def test_a_constant_16_bit_png_is_unreadable_and_a_flat_8_bit_one_is_shown_as_stored(tmp_path):
    Image.fromarray(np.full((20, 20), 3000, np.uint16)).save(tmp_path / "flat16.png")
    with pytest.raises(UnreadableImage, match="constant image: every pixel is 3000"):
        load_grayscale(tmp_path / "flat16.png")
    Image.fromarray(np.full((20, 20), 77, np.uint8)).save(tmp_path / "flat8.png")
    assert np.array_equal(load_grayscale(tmp_path / "flat8.png"), np.full((20, 20), 77, np.uint8))
