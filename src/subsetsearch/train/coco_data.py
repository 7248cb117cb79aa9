"""A COCO-format detection set (an instances JSON and an image folder) as the detector's input.

Each image is read with Pillow as RGB and letterboxed to the detector's square input of ``size``
pixels: scaled by ``size / max(width, height)`` (bilinear) and placed at the top-left corner of
a black square, so a box maps to the input by that one factor, ``[x0, y0, x1, y1] · scale``.
Images of any size and images without boxes are allowed. Classes are the file's categories in
increasing id order (:mod:`subsetsearch.internal.coco`, which also checks every box and category).
Every problem is one :class:`InputError` naming the image; every header is read before anything
is returned, and the images stay in their files until a batch of them is needed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from subsetsearch.errors import InputError
from subsetsearch.internal.coco import CocoPool, read_instances
from subsetsearch.train.canvas import DetectionImages

if TYPE_CHECKING:
    from subsetsearch.train.disk_images import ImageCache


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


def load_coco(
    instances: str | Path,
    image_dir: str | Path,
    *,
    size: int,
    option: str = "data.path",
    cache: ImageCache | None = None,
    workers: int | None = None,
) -> CocoImages:
    """Check every image of a COCO instances file from its header (present, readable, of the size the
    file says, one bit depth for the set) and leave it in its file, letterboxed as it is read
    (:class:`~subsetsearch.train.disk_images.ImageFiles`: a batch at a time, by ``workers``
    processes, into ``cache``): 8-bit images as uint8, deeper ones as float32 (their values).
    InputError on any problem, before anything is decoded."""
    from subsetsearch.train.data import DEFAULT_CACHE_MB
    from subsetsearch.train.disk_images import Decoding, ImageCache, ImageFiles, default_workers, scan_all
    from subsetsearch.train.images import stack_depth

    pool = read_instances(instances, option=option)
    folder = Path(image_dir)
    if not folder.is_dir():
        raise InputError(f"image folder '{folder}' of {pool.path} not found; set it to the folder of its images")
    paths = []
    for image_id, name in zip(pool.image_ids, pool.file_names, strict=True):
        path = folder / name
        if not name or not path.is_file():
            raise InputError(f"image {image_id} ({name or 'no file_name'}) of {pool.path} is missing from {folder}")
        paths.append(path)
    whats = [f"image {image_id} ({path})" for image_id, path in zip(pool.image_ids, paths, strict=True)]
    headers = scan_all([(str(path), what) for path, what in zip(paths, whats, strict=True)], os.cpu_count() or 1)
    for row, (what, header) in enumerate(zip(whats, headers, strict=True)):
        width, height = (int(v) for v in pool.sizes[row])
        if header.size != (width, height):
            raise InputError(
                f"{what} is {header.size[0]}x{header.size[1]} pixels but {pool.path} says "
                f"{width}x{height}; correct its width and height there"
            )
    depths = [(path, header.depth) for path, header in zip(paths, headers, strict=True)]
    depth = stack_depth(depths, f"{pool.path}'s images") if depths else "8-bit"
    how = Decoding(rgb=True, dtype=np.dtype(np.uint8 if depth == "8-bit" else np.float32), letterbox=size)
    x = ImageFiles(
        np.array([str(path.resolve()) for path in paths], dtype=str),
        how,
        (3, size, size),
        cache=cache if cache is not None else ImageCache(DEFAULT_CACHE_MB << 20),
        workers=default_workers() if workers is None else workers,
    )
    if depth == "32-bit float":  # the one depth whose pixels may be NaN: looked at before a run starts
        x.check_values()
    scale = size / np.maximum(pool.sizes[:, 0], pool.sizes[:, 1]).astype(np.float64) if len(pool) else np.empty(0)
    boxes = pool.boxes * scale[pool.box_image, None]
    return CocoImages(DetectionImages(x, boxes, pool.labels.copy(), pool.box_image.copy()), scale, pool)
