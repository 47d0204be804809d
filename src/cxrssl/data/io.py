"""Decoding radiographs: the one place that knows about file formats and bit depths.

Output convention, everywhere in cxrssl: a 2-D ``uint8`` array as a radiologist's
viewer would show the film, 0 = black (air on a conventional radiograph), 255 =
white (bone, metal).

- PNG and JPEG, 8 bit: the grey values as stored. RGB is converted by luminance;
  palette, RGBA and LA images are composited on black first. EXIF orientation is
  applied.
- PNG (and TIFF) at 16 bit: stretched from the image's own minimum to its own
  maximum, because 12- and 16-bit exports use different parts of the range and a
  fixed divisor would leave some nearly black.
- DICOM (read with pydicom, the ``dicom`` extra): stored values -> Modality LUT
  (rescale slope and intercept) -> the first display rule that gives a usable image:
  the VOI LUT Sequence if present, then each Window Center / Width pair in order
  (LINEAR, LINEAR_EXACT or SIGMOID, DICOM PS3.3 C.11.2.1.2), then the modality
  values' own min-max -> 0..255. A window is usable when its centre and width are
  finite numbers and its width is > 0 (>= 1 for LINEAR, as the standard requires), and
  a rule is usable when the film it gives is not one flat grey. MONOCHROME1 (high
  values = black) is inverted last, so every output has air dark.
- An image the decoder would have to make up a film for is refused (listed unreadable
  with the reason): a 16-bit image or a DICOM's modality values that are all one value
  ("constant image": no stretch or window can show anything), or DICOM modality
  values that are not finite. A multi-frame object (Number of Frames > 1) is refused
  too: one file is one film here, and which frame is the radiograph (the first of a
  dual-energy series is not the standard view) cannot be told from the header;
  export the frame as a file of its own.

Files are recognised by content where it matters: a DICOM file without the
``.dcm`` extension (common in PACS exports) is still read as DICOM.

Memory is bounded before any pixel is decoded: an image whose header declares more
than ``max_decode_pixels()`` pixels (rows x columns x frames x samples; default 50
million, about 7,000 x 7,000, set by ``$CXRSSL_MAX_PIXELS``) is listed as unreadable
with the limit in the reason, for every format (DICOM, 8- and 16-bit PNG, TIFF, JPEG).
A damaged DICOM attribute (window, VOI LUT, modality LUT, photometric interpretation)
makes that one file unreadable, never the whole command.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from cxrssl.errors import ManifestError
from cxrssl.extras import MissingExtra, require
from cxrssl.fileio import atomic_write_text, csv_text
from cxrssl.workers import parallel_map

DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", *DICOM_SUFFIXES)
_DICOM_MAGIC_OFFSET = 128  # "DICM" follows a 128-byte preamble (PS3.10 7.1)


class UnreadableImage(Exception):
    """An image file that cannot be decoded; the message gives the reason."""


DEFAULT_MAX_PIXELS = 50_000_000


def max_decode_pixels() -> int:
    """The declared-size limit (pixels) above which an image is not decoded."""
    text = os.environ.get("CXRSSL_MAX_PIXELS", "")
    try:
        return int(text) if text else DEFAULT_MAX_PIXELS
    except ValueError:
        return DEFAULT_MAX_PIXELS


def _check_declared_size(pixels: int, described: str) -> None:
    limit = max_decode_pixels()
    if pixels > limit:
        raise UnreadableImage(f"declares {described} = {pixels:,} pixels, above the decoding limit of {limit:,} (raise it with CXRSSL_MAX_PIXELS)")


def is_dicom(path: Path) -> bool:
    if path.suffix.lower() in DICOM_SUFFIXES:
        return True
    with open(path, "rb") as handle:
        head = handle.read(_DICOM_MAGIC_OFFSET + 4)
    return head[_DICOM_MAGIC_OFFSET:] == b"DICM"


def load_grayscale(path: str | os.PathLike) -> np.ndarray:
    """Decode one image file to a 2-D uint8 array (see the module docstring)."""
    path = Path(path)
    if path.is_dir():
        raise UnreadableImage("is a folder, not an image file")
    if not path.is_file():
        raise UnreadableImage("no such file")
    if path.stat().st_size == 0:
        raise UnreadableImage("empty file (0 bytes)")
    if is_dicom(path):
        return _decode_dicom(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
            _check_declared_size(width * height * max(1, len(image.getbands())), f"{width} x {height} x {len(image.getbands())}")
            image.load()  # a truncated PNG or JPEG fails here, not later
            return _to_uint8_gray(ImageOps.exif_transpose(image))
    except Image.DecompressionBombError as error:
        raise UnreadableImage(f"image too large to decode safely ({error})") from error
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise UnreadableImage(f"cannot decode ({error})") from error


def _stretch(values: np.ndarray) -> np.ndarray:
    """From the image's own minimum (0) to its maximum (255); an image of one value is refused.

    Stretched, one value would become a black film made up by the decoder, and counted
    readable it would go into pretraining and the probes as if it were a radiograph.
    (8-bit images are not stretched: a flat one is shown as its file holds it.)
    """
    values = values.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if not high > low:  # NaN compares false too
        raise UnreadableImage(f"constant image: every pixel is {low:g}; {NOTHING_TO_SHOW}")
    return np.round((values - low) * (255.0 / (high - low))).astype(np.uint8)


def _to_uint8_gray(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return _stretch(np.asarray(image))
    if image.mode in ("RGBA", "LA", "P", "PA"):
        # Composite transparent pixels on black rather than keeping garbage colours.
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image)
    return np.asarray(image.convert("L"), dtype=np.uint8)


def _decode_dicom(path: Path) -> np.ndarray:
    try:  # imported here, not at the top: pydicom is an optional dependency (the dicom extra)
        pydicom = require("pydicom", "dicom")
        pixels_module = require("pydicom.pixels", "dicom")
    except MissingExtra as error:
        raise UnreadableImage(f"is DICOM: {error}") from None
    try:
        dataset = pydicom.dcmread(path)
    except Exception as error:  # pydicom raises many types for damaged files
        raise UnreadableImage(f"cannot parse DICOM ({type(error).__name__}: {error})") from error
    if "PixelData" not in dataset:
        raise UnreadableImage("DICOM object without pixel data (a report or structured document?)")
    try:
        rows, columns = int(dataset.Rows), int(dataset.Columns)
        frames, samples = int(dataset.get("NumberOfFrames", 1) or 1), int(dataset.get("SamplesPerPixel", 1) or 1)
    except Exception as error:
        raise UnreadableImage(f"DICOM image size attributes are damaged ({type(error).__name__}: {error})") from error
    _check_declared_size(rows * columns * frames * samples, f"{rows} x {columns} x {frames} frame(s) x {samples} sample(s)")
    if frames > 1:  # refused rather than guessed: see the module docstring
        raise UnreadableImage(
            f"multi-frame DICOM ({frames} frames): one file is one film here and the header does not say which frame is the radiograph; "
            "export that frame as a file of its own"
        )
    try:
        stored = dataset.pixel_array
    except Exception as error:
        raise UnreadableImage(f"cannot decode DICOM pixel data ({type(error).__name__}: {error}){_plugin_advice(dataset)}") from error
    try:
        return _dicom_to_uint8(dataset, stored, pixels_module)
    except UnreadableImage:
        raise
    except Exception as error:  # damaged LUT, window or photometric attributes
        raise UnreadableImage(f"DICOM display attributes are damaged (window / VOI LUT / modality LUT; {type(error).__name__}: {error})") from error


def _plugin_advice(dataset) -> str:
    """The pip command for the decoders of a compressed transfer syntax; nothing for uncompressed data."""
    try:
        compressed = bool(dataset.file_meta.TransferSyntaxUID.is_compressed)
    except Exception:
        compressed = False
    return "; compressed transfer syntaxes need pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg" if compressed else ""


def _dicom_to_uint8(dataset, stored: np.ndarray, pixels_module) -> np.ndarray:
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if int(dataset.get("SamplesPerPixel", 1)) > 1:  # colour secondary captures
        return _stretch(stored.astype(np.float64) @ np.array([0.299, 0.587, 0.114]))
    with np.errstate(invalid="ignore", over="ignore"):  # a damaged slope gives inf or NaN, refused just below
        values = pixels_module.apply_modality_lut(stored, dataset).astype(np.float64)
    if not np.isfinite(values).all():
        raise UnreadableImage(
            "the modality LUT (rescale slope / intercept) gives values that are not finite numbers; the file's rescale attributes are damaged"
        )
    if values.min() == values.max():
        # Every stored pixel is one value: whatever the display rule, the "film" would be
        # a flat grey made up by the decoder (see _stretch), so it is listed instead.
        raise UnreadableImage(f"constant image: every pixel is {float(values.min()):g} after the modality LUT; {NOTHING_TO_SHOW}")
    pixels = np.round(_display(values, dataset, pixels_module) * 255.0).astype(np.uint8)
    return 255 - pixels if photometric == "MONOCHROME1" else pixels


NOTHING_TO_SHOW = "there is no film to show (a blank export or a placeholder?)"


def _display(values: np.ndarray, dataset, pixels_module) -> np.ndarray:
    """The first usable display rule's image in [0, 1] (see the module docstring); ``values`` are not constant."""
    if "VOILUTSequence" in dataset:
        bits = int(dataset.VOILUTSequence[0].LUTDescriptor[2])
        looked_up = pixels_module.apply_voi_lut(np.round(values).astype(np.int64), dataset, prefer_lut=True)  # a LUT is indexed by integers
        shown = np.clip(looked_up / (2**bits - 1), 0.0, 1.0)
        if _usable(shown):
            return shown
    function = str(dataset.get("VOILUTFunction", "LINEAR")).upper()
    for center, width in _windows(dataset):
        if _usable_window(center, width, function):
            shown = _window(values, center, width, function)
            if _usable(shown):
                return shown
    low, high = float(values.min()), float(values.max())  # the last rule: always usable for values that vary
    return (values - low) / (high - low)


def _windows(dataset) -> list[tuple[float, float]]:
    """The (centre, width) pairs of Window Center / Width, in order; a value that is no number becomes NaN."""
    if "WindowCenter" not in dataset or "WindowWidth" not in dataset:
        return []
    return list(zip(_numbers(dataset.WindowCenter), _numbers(dataset.WindowWidth)))


def _numbers(value) -> list[float]:
    values = [value] if isinstance(value, (str, bytes)) or not isinstance(value, Iterable) else list(value)  # one value or a MultiValue
    numbers = []
    for item in values:
        try:
            numbers.append(float(item))
        except (TypeError, ValueError):
            numbers.append(math.nan)
    return numbers


def _usable_window(center: float, width: float, function: str) -> bool:
    if not (math.isfinite(center) and math.isfinite(width)):
        return False
    return width >= 1.0 if function not in ("SIGMOID", "LINEAR_EXACT") else width > 0.0  # PS3.3 C.11.2.1.2


def _usable(shown: np.ndarray) -> bool:
    """A rule's image can be shown: finite, and not one flat grey once quantised to 0..255."""
    if not np.isfinite(shown).all():
        return False
    quantised = np.round(shown * 255.0)
    return bool(quantised.min() != quantised.max())


def _window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2 windowing, to [0, 1]; the window is usable (``_usable_window``)."""
    if function == "SIGMOID":
        with np.errstate(over="ignore"):  # exp overflows to inf far below the centre: 1 / inf = 0, as it should
            return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT":
        return np.clip((values - center) / width + 0.5, 0.0, 1.0)
    if width == 1.0:
        return (values > center - 0.5).astype(np.float64)
    return np.clip((values - (center - 0.5)) / (width - 1.0) + 0.5, 0.0, 1.0)


def square_resize(pixels: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square on the shorter side, then resize to ``size``×``size``.

    Chest films are close to square; cropping the longer side keeps the anatomy's
    proportions, where stretching would make every lung look narrower or wider.
    """
    height, width = pixels.shape
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = Image.fromarray(pixels[top : top + side, left : left + side])
    if side != size:
        square = square.resize((size, size), Image.Resampling.BILINEAR)
    return np.asarray(square, dtype=np.uint8)


def decode_square(task: tuple[str, int]) -> tuple[np.ndarray | None, str]:
    """(pixels, "") or (None, reason) for one (path, size) task; a worker function."""
    path, size = task
    try:
        return square_resize(load_grayscale(path), size), ""
    except UnreadableImage as error:
        return None, str(error)


@dataclass
class LoadedImages:
    """Pixels of the images that decoded, and the list of those that did not."""

    pixels: np.ndarray  # (N, size, size) uint8
    kept: list[int]  # indices into the input list, one per row of `pixels`
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def load_square_images(paths: Iterable[str | os.PathLike], size: int, workers: int | None = None, progress: bool = True) -> LoadedImages:
    """Decode many files into one (N, size, size) array, on all cores.

    Unreadable files are listed in ``unreadable`` and skipped, never fatal.
    """
    paths = [str(path) for path in paths]
    # One array filled as images arrive: the peak is the decoded set itself, not a
    # list of images plus a stacked copy of them.
    pixels = np.empty((len(paths), size, size), np.uint8)
    kept, unreadable = decode_into(pixels, paths, workers, progress, desc=f"decode {size}px")
    return LoadedImages(pixels[: len(kept)], kept, unreadable)


def decode_into(
    pixels: np.ndarray, paths: Sequence[str], workers: int | None = None, progress: bool = False, desc: str = "decode"
) -> tuple[list[int], list[tuple[str, str]]]:
    """Decode ``paths`` on all cores into ``pixels`` ((len(paths), S, S) uint8, in memory or
    memory-mapped), readable images packed to the front in order.

    Returns the indices of the readable paths (row k of ``pixels`` is ``paths[kept[k]]``)
    and (path, reason) for the others.
    """
    size = pixels.shape[-1]
    tasks = [(path, size) for path in paths]
    kept, unreadable = [], []
    with closing(parallel_map(decode_square, tasks, workers, progress, desc=desc)) as results:  # a failed write here ends the workers too
        for index, (decoded, reason) in enumerate(results):
            if decoded is None:
                unreadable.append((paths[index], reason))
            else:
                pixels[len(kept)] = decoded
                kept.append(index)
    return kept, unreadable


def write_unreadable_list(path: str | os.PathLike, unreadable: Sequence[tuple[str, str]]) -> Path:
    """The skipped images as a CSV (path, reason), so nothing is dropped silently."""
    return atomic_write_text(path, csv_text(["path", "reason"], unreadable, for_spreadsheets=False))  # read back by read_unreadable_list


def read_unreadable_list(path: str | os.PathLike) -> list[tuple[str, str]]:
    """What ``write_unreadable_list`` wrote; nothing when there is no such file."""
    if not Path(path).is_file():
        return []
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return [(row["path"], row["reason"]) for row in csv.DictReader(handle)]
    except (UnicodeDecodeError, csv.Error, KeyError, TypeError) as error:
        raise ManifestError(
            f"{path}: is not a list of unreadable images (path, reason) ({type(error).__name__}); delete it or rebuild what wrote it"
        ) from None
