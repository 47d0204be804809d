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
- DICOM (read with pydicom): stored values -> Modality LUT (rescale slope and
  intercept) -> VOI LUT Sequence if present, else the first Window Center / Width
  (LINEAR, LINEAR_EXACT or SIGMOID, DICOM PS3.3 C.11.2.1.2), else the image's own
  min-max -> 0..255. MONOCHROME1 (high values = black) is inverted last, so every
  output has air dark. A multi-frame object gives its first frame.

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
import io
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence, TypeVar

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from tqdm import tqdm

from cxrssl.fileio import atomic_write_text

DICOM_SUFFIXES = (".dcm", ".dicom", ".dic")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", *DICOM_SUFFIXES)
_DICOM_MAGIC_OFFSET = 128  # "DICM" follows a 128-byte preamble (PS3.10 7.1)

Item = TypeVar("Item")
Result = TypeVar("Result")


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
    values = values.astype(np.float64)
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return np.zeros(values.shape, dtype=np.uint8)
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
    try:  # optional at import time: only DICOM users need it
        import pydicom
    except ImportError as error:
        raise UnreadableImage("is DICOM, which needs pydicom: pip install pydicom") from error
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
    try:
        stored = dataset.pixel_array
    except Exception as error:
        raise UnreadableImage(f"cannot decode DICOM pixel data ({type(error).__name__}: {error}){_plugin_advice(dataset)}") from error
    try:
        return _dicom_to_uint8(dataset, stored)
    except Exception as error:  # damaged LUT, window or photometric attributes
        raise UnreadableImage(f"DICOM display attributes are damaged (window / VOI LUT / modality LUT; {type(error).__name__}: {error})") from error


def _plugin_advice(dataset) -> str:
    """The pip command for the decoders of a compressed transfer syntax; nothing for uncompressed data."""
    try:
        compressed = bool(dataset.file_meta.TransferSyntaxUID.is_compressed)
    except Exception:
        compressed = False
    return "; compressed transfer syntaxes need pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg" if compressed else ""


def _dicom_to_uint8(dataset, stored: np.ndarray) -> np.ndarray:
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).upper()
    if int(dataset.get("SamplesPerPixel", 1)) > 1:  # colour secondary captures
        frame = stored[0] if stored.ndim == 4 else stored
        return _stretch(frame.astype(np.float64) @ np.array([0.299, 0.587, 0.114]))
    if stored.ndim == 3:
        stored = stored[0]
    values = apply_modality_lut(stored, dataset).astype(np.float64)
    if "VOILUTSequence" in dataset:
        bits = int(dataset.VOILUTSequence[0].LUTDescriptor[2])
        looked_up = apply_voi_lut(np.round(values).astype(np.int64), dataset, prefer_lut=True)  # a LUT is indexed by integers
        shown = np.clip(looked_up / (2**bits - 1), 0.0, 1.0)
    elif "WindowCenter" in dataset and "WindowWidth" in dataset:
        shown = _window(values, _first(dataset.WindowCenter), _first(dataset.WindowWidth), str(dataset.get("VOILUTFunction", "LINEAR")))
    else:
        shown = _stretch(values) / 255.0
    pixels = np.round(shown * 255.0).astype(np.uint8)
    return 255 - pixels if photometric == "MONOCHROME1" else pixels


def _first(value) -> float:
    """Window Center / Width may hold several windows; the first is the default one."""
    try:
        return float(value)
    except TypeError:  # a MultiValue
        return float(value[0])


def _window(values: np.ndarray, center: float, width: float, function: str) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2 windowing, to [0, 1]."""
    function = function.upper()
    if function == "SIGMOID":
        return 1.0 / (1.0 + np.exp(-4.0 * (values - center) / width))
    if function == "LINEAR_EXACT":
        return np.clip((values - center) / width + 0.5, 0.0, 1.0)
    width = max(width, 1.0)  # LINEAR requires width >= 1
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


def parallel_map(
    function: Callable[[Item], Result],
    items: Sequence[Item],
    workers: int | None = None,
    progress: bool = False,
    desc: str = "decode",
    block: int = 2048,
) -> Iterator[Result]:
    """``map(function, items)`` on all cores, in order, holding at most one block of results.

    Blocks keep memory bounded when the consumer (e.g. a cache writer) is slower than
    the decoders; ``function`` must be a module-level function (it is pickled).
    """
    workers = workers or os.cpu_count() or 1
    bar = tqdm(total=len(items), desc=desc, unit="img", disable=not progress, leave=False)
    try:
        if workers == 1 or len(items) <= 64:
            for item in items:
                yield function(item)
                bar.update()
            return
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for start in range(0, len(items), block):
                for result in pool.map(function, items[start : start + block], chunksize=16):
                    yield result
                    bar.update()
    finally:
        bar.close()


@dataclass
class LoadedImages:
    """Pixels of the images that decoded, and the list of those that did not."""

    pixels: np.ndarray  # (N, size, size) uint8
    kept: list[int]  # indices into the input list, one per row of `pixels`
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)


def load_square_images(
    paths: Iterable[str | os.PathLike], size: int, workers: int | None = None, progress: bool = True
) -> LoadedImages:
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
    for index, (decoded, reason) in enumerate(parallel_map(decode_square, tasks, workers, progress, desc=desc)):
        if decoded is None:
            unreadable.append((paths[index], reason))
        else:
            pixels[len(kept)] = decoded
            kept.append(index)
    return kept, unreadable


def write_unreadable_list(path: str | os.PathLike, unreadable: Sequence[tuple[str, str]]) -> Path:
    """The skipped images as a CSV (path, reason), so nothing is dropped silently."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "reason"])
    writer.writerows(unreadable)
    return atomic_write_text(path, buffer.getvalue())


def read_unreadable_list(path: str | os.PathLike) -> list[tuple[str, str]]:
    if not Path(path).is_file():
        return []
    with open(path, newline="") as handle:
        return [(row["path"], row["reason"]) for row in csv.DictReader(handle)]
