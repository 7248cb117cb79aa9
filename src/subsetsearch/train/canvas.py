"""A long-tailed object detection set built from real Fashion-MNIST objects (no network needed).

Each image is a ``size × size`` canvas holding 1 to ``max_objects`` Fashion-MNIST items of five
classes, standing for a driving scene's car, pedestrian, bicycle, traffic sign and traffic light,
each resized to a random scale and pasted (pixel-wise maximum) at a random place. Unlabeled
items of the other Fashion-MNIST classes (shirts, coats, dresses, sandals, T-shirts) are pasted
as clutter. A box is the exact pixel extent of its object: the resized item is cut at
``INK_THRESHOLD`` and nothing below it is drawn, so every drawn pixel of an object lies inside its
box and every edge of the box touches one. Classes follow a long tail (``CLASS_WEIGHTS``: cars
about 25 times as common as traffic lights). Training images use Fashion-MNIST's training
items, test images its test items; everything is drawn from one seed.

Boxes are ``[x0, y0, x1, y1]`` in pixels with exclusive ends (``x1 - x0`` is the width).

The sequence mode (:func:`make_detection_sequences`) stands for frames of driving video, the
paper's data: clips of consecutive frames in which the same objects and clutter move smoothly
(a constant velocity, bouncing off the canvas edges) over a background that changes slowly, so
frames within a clip are near-copies.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from subsetsearch.train.data import LabeledImages, load_fashion_mnist
from subsetsearch.train.disk_images import DiskImages

CLASS_NAMES = ("car", "pedestrian", "bicycle", "traffic_sign", "traffic_light")
#: Fashion-MNIST class that stands for each detection class (sneaker, trouser, bag, pullover, ankle boot).
SOURCE_CLASSES = (7, 1, 8, 2, 9)
#: Unlabeled clutter: T-shirt, dress, coat, sandal, shirt.
CLUTTER_CLASSES = (0, 3, 4, 5, 6)
#: Relative frequency of each class among objects (commonest / rarest = 25).
CLASS_WEIGHTS = (0.625, 0.22, 0.085, 0.045, 0.025)
#: Resized pixels below this (of 255) are not drawn: the object's extent is exact.
INK_THRESHOLD = 24


@dataclass(frozen=True)
class DetectionImages:
    """Canvases and their boxes.

    Attributes
    ----------
    x : ndarray of shape (N, c, S, S), uint8 or float32, or DiskImages
        The canvases (one channel), or a COCO set's letterboxed RGB images (left in their files).
    boxes : ndarray of shape (B, 4), int64
        ``[x0, y0, x1, y1]``, ends exclusive.
    labels : ndarray of shape (B,), int64
        Class of each box in [0, 5).
    image_index : ndarray of shape (B,), int64
        Image of each box, non-decreasing.
    """

    x: np.ndarray | DiskImages
    boxes: np.ndarray
    labels: np.ndarray
    image_index: np.ndarray
    clip: np.ndarray | None = None
    """Sequence mode: the clip of each image [N] (frames of one clip are near-copies); else None."""

    def __len__(self) -> int:
        return len(self.x)

    @property
    def num_classes(self) -> int:
        return len(CLASS_NAMES)

    def take(self, rows: np.ndarray) -> DetectionImages:
        """The images ``rows`` (distinct), renumbered 0..len(rows)-1, with their boxes."""
        rows = np.asarray(rows, dtype=np.int64)
        new_id = np.full(len(self), -1, dtype=np.int64)
        new_id[rows] = np.arange(len(rows))
        keep = np.flatnonzero(new_id[self.image_index] >= 0)
        ids = new_id[self.image_index[keep]]
        order = keep[np.argsort(ids, kind="stable")]
        clip = None if self.clip is None else self.clip[rows]
        x = self.x.take(rows) if isinstance(self.x, DiskImages) else self.x[rows]
        return DetectionImages(x, self.boxes[order], self.labels[order], new_id[self.image_index[order]], clip)

    def boxes_of(self, image: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = np.searchsorted(self.image_index, [image, image + 1])
        return self.boxes[lo:hi], self.labels[lo:hi]


def resize_matrix(size: int, source: int = 28) -> np.ndarray:
    """Linear interpolation from ``source`` to ``size`` pixels along one axis: ``[size, source]``."""
    centres = (np.arange(size) + 0.5) * source / size - 0.5
    centres = np.clip(centres, 0, source - 1)
    low = np.floor(centres).astype(np.int64)
    high = np.minimum(low + 1, source - 1)
    frac = centres - low
    matrix = np.zeros((size, source))
    matrix[np.arange(size), low] += 1 - frac
    matrix[np.arange(size), high] += frac
    return matrix


def _resized(items: np.ndarray, sizes: np.ndarray) -> list[np.ndarray]:
    """Each item [28, 28] resized to its size, as uint8 with faint pixels cut to 0."""
    out: list[np.ndarray] = [np.empty(0)] * len(items)
    for size in np.unique(sizes):
        which = np.flatnonzero(sizes == size)
        a = resize_matrix(int(size))
        batch = a @ items[which].astype(np.float32) @ a.T.astype(np.float32)
        batch = np.rint(np.clip(batch, 0, 255)).astype(np.uint8)
        batch[batch < INK_THRESHOLD] = 0
        for j, w in enumerate(which):
            out[w] = batch[j]
    return out


def _draw_items(rng: np.random.Generator, by_class: dict[int, np.ndarray], classes: np.ndarray) -> np.ndarray:
    """A random source row of each requested Fashion-MNIST class."""
    items = np.empty(len(classes), dtype=np.int64)
    for c, rows in by_class.items():
        which = np.flatnonzero(classes == c)
        items[which] = rows[rng.integers(0, rows.size, size=which.size)]
    return items


def _extent(item: np.ndarray) -> tuple[int, int, int, int]:
    rows = np.flatnonzero(item.any(axis=1))
    cols = np.flatnonzero(item.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    """Intersection over the smaller box's area: a small object inside a large one counts as 1."""
    inter = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return inter / min((a[2] - a[0]) * (a[3] - a[1]), (b[2] - b[0]) * (b[3] - b[1]))


@dataclass(frozen=True)
class _Layout:
    """What a set of images holds, in drawing order (each image's clutter, then its objects): the
    image of each item, its resized picture, its place ``(y, x)`` and its class (-1: clutter)."""

    image: np.ndarray
    pictures: list[np.ndarray]
    places: list[tuple[int, int]]
    label: np.ndarray


def _draw_layout(
    rng: np.random.Generator,
    source: LabeledImages,
    num_images: int,
    *,
    size: int,
    max_objects: int,
    scale: tuple[int, int],
    clutter: float,
    max_overlap: float,
) -> _Layout:
    """Items, scales and places of ``num_images`` images (see :func:`make_detection_images`)."""
    if not scale[0] <= scale[1] <= size:
        raise ValueError(f"scale {scale} must be increasing and at most the canvas size {size}")
    by_class = {c: np.flatnonzero(source.y == c) for c in (*SOURCE_CLASSES, *CLUTTER_CLASSES)}
    for c, rows in by_class.items():
        if rows.size == 0:
            raise ValueError(f"the source images hold no Fashion-MNIST class {c}")
    counts = rng.integers(1, max_objects + 1, size=num_images)
    total = int(counts.sum())
    labels = rng.choice(len(CLASS_NAMES), size=total, p=np.asarray(CLASS_WEIGHTS) / sum(CLASS_WEIGHTS))
    items = _draw_items(rng, by_class, np.asarray(SOURCE_CLASSES)[labels])
    sizes = np.rint(np.exp(rng.uniform(np.log(scale[0]), np.log(scale[1]), size=total))).astype(np.int64)
    clutter_counts = rng.poisson(clutter, size=num_images)
    clutter_total = int(clutter_counts.sum())
    clutter_classes = rng.choice(CLUTTER_CLASSES, size=clutter_total)
    clutter_items = _draw_items(rng, by_class, clutter_classes)
    clutter_sizes = np.rint(np.exp(rng.uniform(np.log(scale[0]), np.log(scale[1]), size=clutter_total)))
    pictures = _resized(source.x[items, 0], sizes)
    clutter_pictures = _resized(source.x[clutter_items, 0], clutter_sizes.astype(np.int64))
    extents = [_extent(picture) for picture in pictures]
    # 10 candidate places per object, drawn up front: offsets in [0, size - side]
    tries = (rng.random((total, 10, 2)) * (size - sizes + 1)[:, None, None]).astype(np.int64).tolist()
    clutter_places = (rng.random((clutter_total, 2)) * (size - clutter_sizes + 1)[:, None]).astype(np.int64).tolist()
    image_of: list[int] = []
    drawn: list[np.ndarray] = []
    places: list[tuple[int, int]] = []
    label_of: list[int] = []
    obj = clutter_obj = 0
    for i in range(num_images):
        placed: list[tuple[int, int, int, int]] = []
        for _ in range(clutter_counts[i]):  # clutter first: objects are drawn over it
            y, x = clutter_places[clutter_obj]
            image_of.append(i), drawn.append(clutter_pictures[clutter_obj]), places.append((y, x)), label_of.append(-1)
            clutter_obj += 1
        for _ in range(counts[i]):
            picture, label = pictures[obj], labels[obj]
            obj += 1
            x0, y0, x1, y1 = extents[obj - 1]
            for y, x in tries[obj - 1]:
                box = (x + x0, y + y0, x + x1, y + y1)
                if all(_overlap(box, other) <= max_overlap for other in placed):
                    break
            else:
                if placed:
                    continue
            placed.append(box)
            image_of.append(i), drawn.append(picture), places.append((y, x)), label_of.append(int(label))
    return _Layout(np.asarray(image_of, dtype=np.int64), drawn, places, np.asarray(label_of, dtype=np.int64))


def make_detection_images(
    source: LabeledImages,
    num_images: int,
    seed: int,
    *,
    size: int = 64,
    max_objects: int = 4,
    scale: tuple[int, int] = (10, 36),
    clutter: float = 0.5,
    noise: float = 8.0,
    max_overlap: float = 0.2,
) -> DetectionImages:
    """Draw ``num_images`` canvases from Fashion-MNIST items ``source`` (x [N, 1, 28, 28] uint8, y [N]).

    Parameters
    ----------
    size : canvas side in pixels.
    max_objects : each image holds 1 to ``max_objects`` labeled objects (uniform).
    scale : (smallest, largest) side of a resized item, drawn log-uniformly.
    clutter : mean number of unlabeled items per image (Poisson).
    noise : standard deviation of the Gaussian background noise (0..255 scale); 0 for none.
        Noise is drawn under the objects only where they have no ink.
    max_overlap : largest share of the smaller box a new object's box may cover of one already
        placed, or be covered by (objects that
        find no place in 10 tries are dropped; an image keeps at least one).
    """
    rng = np.random.default_rng(seed)
    layout = _draw_layout(
        rng,
        source,
        num_images,
        size=size,
        max_objects=max_objects,
        scale=scale,
        clutter=clutter,
        max_overlap=max_overlap,
    )
    canvas = np.zeros((num_images, 1, size, size), dtype=np.uint8)
    boxes, box_labels, box_images = [], [], []
    for j, (y, x) in enumerate(layout.places):
        box = _paint(canvas[layout.image[j], 0], layout.pictures[j], x, y)
        if layout.label[j] >= 0:
            boxes.append(box)
            box_labels.append(int(layout.label[j]))
            box_images.append(int(layout.image[j]))
    if noise > 0:
        background = np.abs(rng.standard_normal(size=canvas.shape, dtype=np.float32)) * noise
        background = np.minimum(np.rint(background), INK_THRESHOLD - 1).astype(np.uint8)
        canvas = np.where(canvas == 0, background, canvas)
    return DetectionImages(
        canvas,
        np.asarray(boxes, dtype=np.int64).reshape(-1, 4),
        np.asarray(box_labels, dtype=np.int64),
        np.asarray(box_images, dtype=np.int64),
    )


def _paint(canvas: np.ndarray, picture: np.ndarray, x: int, y: int) -> tuple[int, int, int, int]:
    """Paste ``picture`` (pixel-wise maximum) with its corner at ``(x, y)``; its object's box."""
    s = picture.shape[0]
    np.maximum(canvas[y : y + s, x : x + s], picture, out=canvas[y : y + s, x : x + s])
    x0, y0, x1, y1 = _extent(picture)
    return x + x0, y + y0, x + x1, y + y1


def make_detection_sequences(
    source: LabeledImages,
    num_images: int,
    seed: int,
    *,
    clip_length: int = 8,
    speed: float = 1.5,
    background_change: float = 0.05,
    size: int = 64,
    max_objects: int = 4,
    scale: tuple[int, int] = (10, 36),
    clutter: float = 0.5,
    noise: float = 8.0,
    max_overlap: float = 0.2,
) -> DetectionImages:
    """Draw ``num_images`` frames in clips of ``clip_length`` (the last clip may be shorter).

    A clip draws its objects and clutter as :func:`make_detection_images` draws an image's (the
    same classes, long tail, scales and first-frame overlap rule), and a velocity for each, uniform
    in ``[-speed, speed]`` pixels per frame along each axis. In frame ``t`` an item sits at its first
    position plus ``t`` times its velocity, reflected at the canvas edges and rounded to pixels;
    items may pass over one another (each box stays its own object's exact extent). The clip's
    background noise is drawn once and, from frame to frame, a share ``background_change`` of its
    pixels is drawn anew. ``clip`` gives each frame's clip.
    """
    if clip_length < 1:
        raise ValueError(f"clip_length must be at least 1, got {clip_length}")
    rng = np.random.default_rng(seed)
    num_clips = -(-num_images // clip_length)
    layout = _draw_layout(  # a clip's items and first places, as one image's
        rng,
        source,
        num_clips,
        size=size,
        max_objects=max_objects,
        scale=scale,
        clutter=clutter,
        max_overlap=max_overlap,
    )
    velocity = rng.uniform(-speed, speed, size=(len(layout.places), 2))
    frames = np.zeros((num_images, 1, size, size), dtype=np.uint8)
    boxes, box_labels, box_images = [], [], []
    background = np.zeros((size, size), dtype=np.uint8)
    for image in range(num_images):
        c, t = divmod(image, clip_length)
        if noise > 0:
            fresh = np.minimum(np.rint(np.abs(rng.standard_normal((size, size))) * noise), INK_THRESHOLD - 1)
            redraw = np.ones((size, size), bool) if t == 0 else rng.random((size, size)) < background_change
            background[redraw] = fresh[redraw].astype(np.uint8)
        canvas = frames[image, 0]
        for j in np.flatnonzero(layout.image == c):  # clutter first, then objects, as drawn
            y0, x0 = layout.places[j]
            span = size - layout.pictures[j].shape[0]
            x = _bounce(x0 + velocity[j, 0] * t, span)
            y = _bounce(y0 + velocity[j, 1] * t, span)
            box = _paint(canvas, layout.pictures[j], x, y)
            if layout.label[j] >= 0:
                boxes.append(box)
                box_labels.append(int(layout.label[j]))
                box_images.append(image)
        if noise > 0:
            np.copyto(canvas, background, where=canvas == 0)
    return DetectionImages(
        frames,
        np.asarray(boxes, dtype=np.int64).reshape(-1, 4),
        np.asarray(box_labels, dtype=np.int64),
        np.asarray(box_images, dtype=np.int64),
        np.arange(num_images, dtype=np.int64) // clip_length,
    )


def _bounce(position: float, span: int) -> int:
    """``position`` reflected into ``[0, span]`` (a ball bouncing between two walls), rounded."""
    if span <= 0:
        return 0
    q = position % (2 * span)
    return round(q if q <= span else 2 * span - q)


def load_fashion_detection(
    num_train: int,
    num_test: int,
    seed: int,
    directory: str | None = None,
    sequence: dict | None = None,
    **options: object,
) -> tuple[DetectionImages, DetectionImages]:
    """Training canvases from Fashion-MNIST's training items, test canvases from its test items;
    with ``sequence`` (:func:`make_detection_sequences`'s clip options), clips of frames."""
    train_items, test_items = load_fashion_mnist(directory)
    streams = np.random.SeedSequence(seed).spawn(2)
    if sequence is None:
        make = make_detection_images
    else:
        make = functools.partial(make_detection_sequences, **sequence)  # type: ignore[assignment]
    train = make(train_items, num_train, _seed(streams[0]), **options)  # type: ignore[arg-type]
    test = make(test_items, num_test, _seed(streams[1]), **options)  # type: ignore[arg-type]
    return train, test


def _seed(sequence: np.random.SeedSequence) -> int:
    return int(sequence.generate_state(1, np.uint64)[0] >> 1)
