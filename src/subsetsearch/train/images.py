"""Image files read at their own bit depth: what ``image_folder`` and ``coco`` sets are made of.

Pillow's ``convert("L")`` or ``convert("RGB")`` saturates 16-bit pixels (every value above 255 becomes
255) and zeroes floating-point ones; here every image is read at its depth:

- 8-bit images (greyscale, palette, RGB, RGBA, CMYK, ...) as uint8, greyscale or RGB;
- 16-bit greyscale images (PNG, TIFF) as their values, 0..65,535;
- 32-bit integer or floating-point greyscale images (TIFF) as their values (NaN or infinity refused).

A set keeps one depth: 8-bit images stay uint8, the others become float32 (the trainer normalises
every channel by the pool's mean and standard deviation, so any range serves). Images of several
depths in one set are refused, naming one of each: no scaling puts them on a common footing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from subsetsearch.errors import InputError

__all__ = ["Picture", "depth_of", "read_picture", "stack_depth"]

#: Pillow modes of greyscale images deeper than 8 bits, and what their pixels hold.
_DEEP = {
    "I;16": "16-bit",
    "I;16L": "16-bit",
    "I;16B": "16-bit",
    "I;16N": "16-bit",
    "I": "32-bit integer",
    "F": "32-bit float",
}
#: Pillow modes of 8-bit images read as greyscale; every other 8-bit mode is read as RGB.
_GREY = ("1", "L")


@dataclass(frozen=True)
class Picture:
    """One image at its depth: ``depth`` names it (``8-bit``, ``16-bit``, ...), ``grey`` says whether it
    has one channel, and ``image`` is the opened Pillow image in a mode that resizes at that depth
    (``L``/``RGB`` for 8-bit, ``I`` or ``F`` for the others)."""

    path: Path
    depth: str
    grey: bool
    image: object

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        return self.image.size

    def array(self, *, rgb: bool = False, size: tuple[int, int] | None = None) -> np.ndarray:
        """The pixels, resized to ``size`` (width, height) where given: uint8 for 8-bit images
        ([H, W], or [H, W, 3] for RGB or with ``rgb``), float32 [H, W] (or [H, W, 3] with ``rgb``) for
        the deeper ones."""
        from PIL import Image

        image = self.image
        if self.depth == "8-bit":
            image = image.convert("RGB" if rgb or not self.grey else "L")
        if size is not None and image.size != size:
            image = image.resize(size, Image.BILINEAR)
        array = np.asarray(image, dtype=np.uint8 if self.depth == "8-bit" else np.float32)
        if rgb and array.ndim == 2:
            array = np.repeat(array[:, :, None], 3, axis=2)
        return array


def depth_of(mode: str) -> tuple[str, bool]:
    """The depth an image of Pillow ``mode`` is read at, and whether it is read with one channel.

    >>> depth_of("L"), depth_of("RGB"), depth_of("I;16")
    (('8-bit', True), ('8-bit', False), ('16-bit', True))
    """
    return _DEEP.get(mode, "8-bit"), mode in _GREY or mode in _DEEP


def read_picture(path: str | os.PathLike, what: str) -> Picture:
    """The image at ``path`` read whole; InputError naming it (``what`` says what it is: ``image
    'a.png'``) when it cannot be read as an image, or holds NaN or infinite pixels."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as opened:
            opened.load()
            mode = opened.mode
            if mode in _DEEP:  # I;16 resizes poorly in Pillow: widen it, values kept
                image = opened.convert("F" if mode == "F" else "I")
            else:
                image = opened.copy()
    except (UnidentifiedImageError, OSError) as error:
        raise InputError(f"{what} cannot be read as an image ({error}); remove or replace it") from None
    depth, grey = depth_of(mode)
    if depth == "32-bit float" and not np.isfinite(np.asarray(image)).all():
        raise InputError(f"{what} holds NaN or infinite pixels; clean or drop it")
    return Picture(path, depth, grey, image)


def stack_depth(depths: list[tuple[Path, str]], where: str) -> str:
    """The one depth of images (path, depth); InputError naming two of different depths otherwise."""
    first_path, first = depths[0]
    for path, depth in depths[1:]:
        if depth != first:
            raise InputError(
                f"{where} mixes bit depths: '{first_path}' is {first}, '{path}' is {depth}; convert them to one depth"
            )
    return first
