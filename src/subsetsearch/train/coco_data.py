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
    """Read, check and letterbox every image of a COCO instances file; InputError on any problem."""
    from PIL import Image, UnidentifiedImageError

    pool = read_instances(instances, option=option)
    folder = Path(image_dir)
    if not folder.is_dir():
        raise InputError(f"image folder '{folder}' of {pool.path} not found; set it to the folder of its images")
    x = np.zeros((len(pool), 3, size, size), dtype=np.uint8)
    scale = np.empty(len(pool))
    for row, (image_id, name) in enumerate(zip(pool.image_ids, pool.file_names, strict=True)):
        path = folder / name
        if not name or not path.is_file():
            raise InputError(f"image {image_id} ({name or 'no file_name'}) of {pool.path} is missing from {folder}")
        try:
            with Image.open(path) as opened:
                picture = opened.convert("RGB")
        except (UnidentifiedImageError, OSError) as error:
            raise InputError(f"image {image_id} ({path}) cannot be read as an image ({error}); replace it") from None
        width, height = (int(v) for v in pool.sizes[row])
        if picture.size != (width, height):
            raise InputError(
                f"image {image_id} ({path}) is {picture.size[0]}x{picture.size[1]} pixels but {pool.path} says "
                f"{width}x{height}; correct its width and height there"
            )
        scale[row] = size / max(width, height)
        resized = (max(1, round(width * scale[row])), max(1, round(height * scale[row])))
        array = np.asarray(picture.resize(resized, Image.BILINEAR), dtype=np.uint8)
        x[row, :, : resized[1], : resized[0]] = array.transpose(2, 0, 1)
    boxes = pool.boxes * scale[pool.box_image, None]
    return CocoImages(DetectionImages(x, boxes, pool.labels.copy(), pool.box_image.copy()), scale, pool)
