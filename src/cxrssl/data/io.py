"""Decoding radiographs: the one place that knows about file formats and bit depths.

Output convention, everywhere in cxrssl: a 2-D ``uint8`` array, 0 = black (air on a
conventional radiograph), 255 = white (bone, metal). 16-bit images are stretched
from their own minimum to their own maximum, because 12- and 16-bit exports use
different parts of the range and a fixed divisor would leave some nearly black.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm


class UnreadableImage(Exception):
    """An image file that cannot be decoded; the message gives the reason."""


def load_grayscale(path: str | os.PathLike) -> np.ndarray:
    """Decode one image file to a 2-D uint8 array (see the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise UnreadableImage("not a file")
    try:
        with Image.open(path) as image:
            image.load()
            return _to_uint8_gray(image)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise UnreadableImage(f"cannot decode ({error})") from error


def _to_uint8_gray(image: Image.Image) -> np.ndarray:
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        pixels = np.asarray(image, dtype=np.float64)
        low, high = float(pixels.min()), float(pixels.max())
        if high <= low:
            return np.zeros(pixels.shape, dtype=np.uint8)
        return np.round((pixels - low) * (255.0 / (high - low))).astype(np.uint8)
    if image.mode in ("RGBA", "LA", "P", "PA"):
        # Composite transparent pixels on black rather than keeping garbage colours.
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))
        image = Image.alpha_composite(background, image)
    return np.asarray(image.convert("L"), dtype=np.uint8)


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


def _load_square(task: tuple[str, int]) -> tuple[np.ndarray | None, str]:
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


def load_square_images(
    paths: Sequence[str | os.PathLike], size: int, workers: int | None = None, progress: bool = True
) -> LoadedImages:
    """Decode many files into one (N, size, size) array, on all cores.

    Unreadable files are listed in ``unreadable`` and skipped, never fatal.
    """
    workers = workers or os.cpu_count() or 1
    tasks = [(str(path), size) for path in paths]
    results = []
    bar = tqdm(total=len(tasks), desc=f"decode {size}px", unit="img", disable=not progress, leave=False)
    if workers > 1 and len(tasks) > 64:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for result in pool.map(_load_square, tasks, chunksize=32):
                results.append(result)
                bar.update()
    else:
        for task in tasks:
            results.append(_load_square(task))
            bar.update()
    bar.close()
    kept = [i for i, (pixels, _) in enumerate(results) if pixels is not None]
    unreadable = [(tasks[i][0], reason) for i, (pixels, reason) in enumerate(results) if pixels is None]
    stacked = np.stack([results[i][0] for i in kept]) if kept else np.zeros((0, size, size), np.uint8)
    return LoadedImages(stacked, kept, unreadable)
