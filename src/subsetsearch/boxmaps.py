"""Acquisition for box-list detectors: each member's boxes rendered into per-class centre maps.

YOLO, Faster R-CNN, DETR and most detectors emit a list of boxes per image, not the per-class
centre maps the paper scores (:mod:`subsetsearch.detection`). This module renders each member's
boxes into such maps and scores them the same way, so any detector gets the paper's method.

The rendering rule, for a map stride of ``s`` pixels:

- Cell ``(u, v)`` covers pixels ``[u·s, (u+1)·s) × [v·s, (v+1)·s)`` of its image; an image of
  ``W × H`` pixels has ``ceil(W/s) × ceil(H/s)`` cells.
- A box ``[x0, y0, x1, y1]`` (pixels) has its centre in cell ``(⌊cx/s⌋, ⌊cy/s⌋)`` and a spread
  ``σ = max(0.5, min(x1 - x0, y1 - y0) / (6·s))`` cells, the rule of the training targets of the
  built-in detector (:func:`subsetsearch.train.detector.gaussian_sigma`).
- The member's probability of an object of the box's class centred at cell ``c`` is
  ``score · exp(-d² / (2σ²))``, ``d`` the distance in cells between ``c`` and the centre cell, for
  the cells within ``r = ⌈3σ⌉`` cells of the centre cell along both axes and inside the image;
  elsewhere the box adds nothing (at ``3σ`` a box gives 1.1% of its score). The peak, at the
  centre cell, is the box's score.
- Where boxes of one member and class overlap, the larger value counts; where no box of a member
  reaches, its probability is 0.

Each (class, cell) is then the binary problem (no object, object) of
:func:`subsetsearch.detection.acquire_maps`, and an image scores the maximum over its classes and
cells. Only the cells some box reaches are computed: at every other cell each member says 0, and
each function scores 0 there (for ``error_count``, the ground-truth centre cells are added), so
the maximum is the dense maps' maximum while the work grows with the boxes, not with the pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from subsetsearch.acquisition import ACQUISITION_FUNCTIONS, acquire
from subsetsearch.stats import EnsembleStats

__all__ = ["BoxMaps", "Boxes", "box_image_scores", "render_centres"]

#: Cells rendered around a box's centre cell along each axis, in units of its spread σ.
WINDOW_SIGMAS = 3.0
#: The most cells an image's map may have (16 M: an image of 16,384 x 16,384 pixels at stride 4). The
#: work of a box is bounded by its image's cells, so this bounds the work and memory of any box.
MAX_IMAGE_CELLS = 1 << 24
_FAR = 2.0**40


@dataclass(frozen=True)
class Boxes:
    """One member's detections (or the ground truth) for some images.

    Parameters
    ----------
    image : array-like of shape (d,), int
        The image of each box, in ``[0, n)`` for the ``n`` images scored.
    label : array-like of shape (d,), int
        Its class, in ``[0, K)``.
    xyxy : array-like of shape (d, 4), float
        ``[x0, y0, x1, y1]`` in pixels, ``x0 <= x1`` and ``y0 <= y1``.
    score : array-like of shape (d,), float, optional
        The detector's confidence in ``[0, 1]``; 1 for every box when absent (ground truth).
    """

    image: np.ndarray
    label: np.ndarray
    xyxy: np.ndarray
    score: np.ndarray | None = None

    def __post_init__(self) -> None:
        image = np.asarray(self.image, dtype=np.int64).reshape(-1)
        label = np.asarray(self.label, dtype=np.int64).reshape(-1)
        xyxy = np.asarray(self.xyxy, dtype=np.float64).reshape(-1, 4)
        score = np.ones(len(image)) if self.score is None else np.asarray(self.score, dtype=np.float64).reshape(-1)
        if not len(image) == len(label) == len(xyxy) == len(score):
            raise ValueError(
                f"boxes: image, label, xyxy and score must have one entry per box, got "
                f"{len(image)}, {len(label)}, {len(xyxy)} and {len(score)}"
            )
        if not (np.isfinite(xyxy).all() and np.isfinite(score).all()):
            raise ValueError("boxes: coordinates and scores must be finite")
        if len(xyxy) and ((xyxy[:, 2] < xyxy[:, 0]).any() or (xyxy[:, 3] < xyxy[:, 1]).any()):
            raise ValueError("boxes: every box must have x0 <= x1 and y0 <= y1 ([x0, y0, x1, y1] in pixels)")
        if len(score) and (score.min() < 0 or score.max() > 1):
            raise ValueError(f"boxes: scores must be in [0, 1], got {score.min()} to {score.max()}")
        for name, value in (("image", image), ("label", label), ("xyxy", xyxy), ("score", score)):
            object.__setattr__(self, name, value)

    def __len__(self) -> int:
        return len(self.image)


def render_centres(
    boxes: Boxes, *, image_sizes: np.ndarray, num_classes: int, stride: float = 4.0
) -> tuple[np.ndarray, np.ndarray]:
    """The cells each box reaches and the member's probability there (see the module docstring).

    Parameters
    ----------
    boxes : Boxes
        One member's boxes.
    image_sizes : array-like of shape (n, 2), int
        ``(width, height)`` in pixels of each image.
    num_classes : int
        K.
    stride : float, default 4.0
        Pixels per map cell.

    Returns
    -------
    keys : ndarray of shape (L,), int64, increasing
        The location ``((image·K + class)·G + v)·G + u`` of each rendered cell, ``G`` the
        largest image's cell count along either axis.
    probs : ndarray of shape (L,), float64
        The member's probability of an object of that class centred there (the largest over its
        boxes).
    """
    sizes, grid, stride = _check_frame(image_sizes, num_classes, stride)
    _check_boxes(boxes, len(sizes), num_classes)
    if len(boxes) == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0)
    cells_x = np.ceil(sizes[:, 0] / stride).astype(np.int64)
    cells_y = np.ceil(sizes[:, 1] / stride).astype(np.int64)
    xyxy = boxes.xyxy / stride
    cx, cy = (xyxy[:, 0] + xyxy[:, 2]) / 2, (xyxy[:, 1] + xyxy[:, 3]) / 2
    # a centre or window beyond 2**40 cells reaches no image either way: bounded so integers cannot overflow
    gx, gy = (np.clip(np.floor(c), -_FAR, _FAR).astype(np.int64) for c in (cx, cy))
    sigma = np.maximum(0.5, np.minimum(xyxy[:, 2] - xyxy[:, 0], xyxy[:, 3] - xyxy[:, 1]) / 6.0)
    radius = np.minimum(np.ceil(WINDOW_SIGMAS * sigma), _FAR).astype(np.int64)
    all_keys, all_probs = [], []
    # a box whose window is wider than its image (a huge box): only its cells inside the image
    huge = 2 * radius + 1 > np.maximum(cells_x, cells_y)[boxes.image]
    for b in np.flatnonzero(huge):
        image = boxes.image[b]
        us = np.arange(max(0, gx[b] - radius[b]), min(cells_x[image], gx[b] + radius[b] + 1))
        vs = np.arange(max(0, gy[b] - radius[b]), min(cells_y[image], gy[b] + radius[b] + 1))
        u, v = np.meshgrid(us, vs)
        d2 = (u - gx[b]).astype(np.float64) ** 2 + (v - gy[b]).astype(np.float64) ** 2
        all_keys.append((((image * num_classes + boxes.label[b]) * grid + v) * grid + u).reshape(-1))
        all_probs.append((boxes.score[b] * np.exp(-d2 / (2 * sigma[b] ** 2))).reshape(-1))
    for r in np.unique(radius[~huge]):
        which = np.flatnonzero((radius == r) & ~huge)
        offsets = np.arange(-r, r + 1)
        u = gx[which, None, None] + offsets[None, None, :]  # [b, 1, w]
        v = gy[which, None, None] + offsets[None, :, None]  # [b, w, 1]
        d2 = (offsets[None, None, :] ** 2 + offsets[None, :, None] ** 2).astype(np.float64)
        value = boxes.score[which, None, None] * np.exp(-d2 / (2 * sigma[which, None, None] ** 2))
        img = boxes.image[which, None, None]
        inside = (u >= 0) & (v >= 0) & (u < cells_x[img]) & (v < cells_y[img])
        u, v = np.broadcast_to(u, inside.shape), np.broadcast_to(v, inside.shape)
        base = np.broadcast_to(img * num_classes + boxes.label[which, None, None], inside.shape)
        all_keys.append(((base[inside] * grid + v[inside]) * grid + u[inside]).astype(np.int64))
        all_probs.append(np.broadcast_to(value, inside.shape)[inside])
    keys, probs = np.concatenate(all_keys), np.concatenate(all_probs)
    if keys.size == 0:  # every box lies outside its image
        return keys, probs
    order = np.lexsort((probs, keys))  # by key, then value: the last of each key is its largest
    keys, probs = keys[order], probs[order]
    last = np.flatnonzero(np.r_[keys[1:] != keys[:-1], True])
    return keys[last], probs[last]


def box_image_scores(
    members: Sequence[Boxes],
    function: str,
    *,
    image_sizes: np.ndarray,
    num_classes: int,
    stride: float = 4.0,
    truth: Boxes | None = None,
) -> np.ndarray:
    """Score images by the ensemble's disagreement on their rendered centre maps.

    Parameters
    ----------
    members : sequence of M Boxes
        Each member's detections of the ``n`` images.
    function : {"entropy", "mutual_information", "variation_ratios", "error_count"}
        Applied at each (class, cell) to the binary distribution (1 - p, p); a member votes
        "object" where p > 0.5.
    image_sizes : array-like of shape (n, 2), int
        ``(width, height)`` of each image in pixels.
    num_classes : int
        K.
    stride : float, default 4.0
        Pixels per map cell.
    truth : Boxes, optional
        The ground-truth boxes; required by ``error_count``, whose ground truth is 1 at each
        box's centre cell.

    Returns
    -------
    image_scores : ndarray of shape (n,), float64
        The maximum over classes and cells; 0 for an image no box reaches.

    Raises
    ------
    ValueError
        For no member, an unknown ``function``, boxes of images or classes out of range, or
        ``truth`` missing for ``error_count``.

    Examples
    --------
    >>> import numpy as np
    >>> sizes = np.array([[16, 16]])
    >>> sure = Boxes([0], [0], [[4.0, 4.0, 8.0, 8.0]], [0.9])  # one member sees an object
    >>> blind = Boxes([], [], np.zeros((0, 4)), [])  # the other sees nothing
    >>> scores = box_image_scores([sure, blind], "variation_ratios", image_sizes=sizes, num_classes=1)
    >>> scores.tolist()
    [0.5]
    """
    _check_function(function, has_truth=truth is not None)  # before the rendering, which is the work
    return BoxMaps(members, image_sizes=image_sizes, num_classes=num_classes, stride=stride, truth=truth).scores(
        function
    )


class BoxMaps:
    """Members' boxes rendered once, at the cells they reach, and scored by any of the functions.

    Parameters are those of :func:`box_image_scores` less ``function``; ``truth`` adds its centre
    cells (where every other function scores 0, so only ``error_count`` reads them).

    Examples
    --------
    >>> import numpy as np
    >>> maps = BoxMaps([Boxes([0], [0], [[0.0, 0.0, 4.0, 4.0]], [1.0]), Boxes([0], [0], [[0.0, 0.0, 4.0, 4.0]], [0.5])],
    ...                image_sizes=np.array([[4, 4]]), num_classes=1)
    >>> maps.scores("variation_ratios").tolist(), round(float(maps.scores("entropy")[0]), 4)
    ([0.5], 0.5623)
    """

    def __init__(
        self,
        members: Sequence[Boxes],
        *,
        image_sizes: np.ndarray,
        num_classes: int,
        stride: float = 4.0,
        truth: Boxes | None = None,
    ) -> None:
        if len(members) == 0:
            raise ValueError("members holds no member; give at least one (M >= 1)")
        sizes, grid, stride = _check_frame(image_sizes, num_classes, stride)
        rendered = [render_centres(m, image_sizes=sizes, num_classes=num_classes, stride=stride) for m in members]
        parts = [keys for keys, _ in rendered]
        self.has_truth = truth is not None
        gt_keys = None
        if truth is not None:
            gt_keys = _centre_keys(truth, sizes, num_classes, grid, stride)
            parts.append(gt_keys)
        self.locations = np.unique(np.concatenate(parts))
        self.num_images = len(sizes)
        self.images = self.locations // (num_classes * grid * grid)
        self.stats: EnsembleStats | None = None
        self.labels = None
        if self.locations.size:
            probs = np.zeros((len(members), self.locations.size, 2))
            for m, (keys, p) in enumerate(rendered):
                probs[m, np.searchsorted(self.locations, keys), 1] = p
            probs[..., 0] = 1 - probs[..., 1]
            self.stats = EnsembleStats.from_members(probs)
            if gt_keys is not None:
                self.labels = np.isin(self.locations, gt_keys).astype(np.int64)

    def scores(self, function: str) -> np.ndarray:
        """Image scores ``(n,)`` by ``function``: the maximum over classes and cells, 0 for an image no
        box reaches (ValueError for an unknown function, or ``error_count`` without ``truth``)."""
        _check_function(function, has_truth=self.has_truth)
        image_scores = np.zeros(self.num_images)
        if self.stats is not None:
            location_scores = acquire(self.stats, function, labels=self.labels)
            np.maximum.at(image_scores, self.images, location_scores)
        return image_scores


def _check_function(function: str, *, has_truth: bool) -> None:
    if function not in ACQUISITION_FUNCTIONS:
        raise ValueError(
            f"unknown acquisition function {function!r}; choose one of: {', '.join(ACQUISITION_FUNCTIONS)}"
        )
    if function == "error_count" and not has_truth:
        raise ValueError("error_count needs the ground-truth boxes (truth=...)")


def _centre_keys(truth: Boxes, sizes: np.ndarray, num_classes: int, grid: int, stride: float) -> np.ndarray:
    _check_boxes(truth, len(sizes), num_classes)
    cells_x = np.ceil(sizes[truth.image, 0] / stride).astype(np.int64)
    cells_y = np.ceil(sizes[truth.image, 1] / stride).astype(np.int64)
    u = np.minimum(np.floor((truth.xyxy[:, 0] + truth.xyxy[:, 2]) / (2 * stride)).astype(np.int64), cells_x - 1)
    v = np.minimum(np.floor((truth.xyxy[:, 1] + truth.xyxy[:, 3]) / (2 * stride)).astype(np.int64), cells_y - 1)
    return np.unique(((truth.image * num_classes + truth.label) * grid + np.maximum(v, 0)) * grid + np.maximum(u, 0))


def _check_frame(image_sizes: np.ndarray, num_classes: int, stride: float) -> tuple[np.ndarray, int, float]:
    sizes = np.asarray(image_sizes)
    if sizes.ndim != 2 or sizes.shape[1] != 2 or len(sizes) == 0:
        raise ValueError(f"image_sizes must have shape (n, 2) (width, height), got {sizes.shape}")
    if (sizes < 1).any():
        raise ValueError("image_sizes: every width and height must be at least 1 pixel")
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    if not (stride > 0 and np.isfinite(stride)):
        raise ValueError(f"stride must be a positive, finite number of pixels, got {stride}")
    cells = map_cells(sizes, stride)
    if cells.max() > MAX_IMAGE_CELLS:
        row = int(np.argmax(cells))
        raise ValueError(
            f"image {row} is {int(sizes[row, 0])}x{int(sizes[row, 1])} pixels: its map at stride {stride} has "
            f"{int(cells[row])} cells, more than {MAX_IMAGE_CELLS}; give a larger stride"
        )
    sizes = sizes.astype(np.int64)
    grid = int(np.ceil(sizes.max() / stride))
    return sizes, grid, float(stride)


def map_cells(image_sizes: np.ndarray, stride: float) -> np.ndarray:
    """Cells of each image's map, ``ceil(W/s) * ceil(H/s)``, as float64 (exact below 2**53; larger
    counts are refused anyway).

    >>> map_cells(np.array([[16, 9]]), 4.0).tolist()
    [12.0]
    """
    sizes = np.asarray(image_sizes, dtype=np.float64)
    return np.ceil(sizes[:, 0] / stride) * np.ceil(sizes[:, 1] / stride)


def _check_boxes(boxes: Boxes, num_images: int, num_classes: int) -> None:
    if len(boxes) == 0:
        return
    if boxes.image.min() < 0 or boxes.image.max() >= num_images:
        raise ValueError(
            f"boxes: image indices must be in [0, {num_images}), got {boxes.image.min()} to {boxes.image.max()}"
        )
    if boxes.label.min() < 0 or boxes.label.max() >= num_classes:
        raise ValueError(
            f"boxes: classes must be in [0, {num_classes}), got {boxes.label.min()} to {boxes.label.max()}"
        )
