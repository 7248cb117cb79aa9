"""A COCO-format detection set (an instances JSON and an image folder) as the detector's input.

Each image is read with Pillow as RGB and letterboxed to the detector's square input of ``size``
pixels: scaled by ``size / max(width, height)`` (bilinear) and placed at the top-left corner of
a black square, so a box maps to the input by that one factor, ``[x0, y0, x1, y1] · scale``.
Images of any size and images without boxes are allowed. Classes are the file's categories in
increasing id order (:mod:`subsetsearch.internal.coco`, which also checks every box and category).
Every problem is one :class:`InputError` naming the image; nothing is returned until all are read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from subsetsearch.errors import InputError
from subsetsearch.internal.coco import CocoPool, read_instances
from subsetsearch.train.canvas import DetectionImages


@dataclass(frozen=True)
class CocoImages:
    """Letterboxed images with their boxes in input pixels (``images``), each image's scale
    (input pixels per original pixel) and the file they came from (original boxes and ids)."""

    images: DetectionImages
    scale: np.ndarray
    source: CocoPool

    def take(self, rows: np.ndarray) -> CocoImages:
        """The images ``rows`` (distinct) and their boxes, renumbered; ``source`` unchanged."""
        return CocoImages(self.images.take(rows), self.scale[rows], self.source)


def load_coco(instances: str | Path, image_dir: str | Path, *, size: int, option: str = "data.path") -> CocoImages:
    """Read, check and letterbox every image of a COCO instances file, at its bit depth
    (:mod:`subsetsearch.train.images`: 8-bit images as uint8, deeper ones as float32; one depth a
    set); InputError on any problem."""
    from subsetsearch.train.images import read_picture, stack_depth

    pool = read_instances(instances, option=option)
    folder = Path(image_dir)
    if not folder.is_dir():
        raise InputError(f"image folder '{folder}' of {pool.path} not found; set it to the folder of its images")
    x = None
    scale = np.empty(len(pool))
    first = None
    for row, (image_id, name) in enumerate(zip(pool.image_ids, pool.file_names, strict=True)):
        path = folder / name
        if not name or not path.is_file():
            raise InputError(f"image {image_id} ({name or 'no file_name'}) of {pool.path} is missing from {folder}")
        picture = read_picture(path, f"image {image_id} ({path})")
        first = first or picture
        stack_depth([first, picture], f"{pool.path}'s images")
        if x is None:  # 8-bit images stay uint8; deeper ones keep their values
            x = np.zeros((len(pool), 3, size, size), dtype=np.uint8 if picture.depth == "8-bit" else np.float32)
        width, height = (int(v) for v in pool.sizes[row])
        if picture.size != (width, height):
            raise InputError(
                f"image {image_id} ({path}) is {picture.size[0]}x{picture.size[1]} pixels but {pool.path} says "
                f"{width}x{height}; correct its width and height there"
            )
        scale[row] = size / max(width, height)
        resized = (max(1, round(width * scale[row])), max(1, round(height * scale[row])))
        array = picture.array(rgb=True, size=resized)
        x[row, :, : resized[1], : resized[0]] = array.transpose(2, 0, 1)
    if x is None:
        x = np.zeros((0, 3, size, size), dtype=np.uint8)
    boxes = pool.boxes * scale[pool.box_image, None]
    return CocoImages(DetectionImages(x, boxes, pool.labels.copy(), pool.box_image.copy()), scale, pool)
