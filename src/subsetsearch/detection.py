"""Acquisition for object detectors that emit per-class centre maps.

A single-stage detector predicts, for every class k and location (h, w), the
probability that an object of class k is centred there. Each (k, h, w) is a
binary classification, so the four acquisition functions apply per location
with the two classes (no object, object), giving per-class uncertainty
heatmaps; an image's score is the maximum over classes and locations
(docs/architecture.md, "Core contracts"). A member votes "object" where its probability exceeds 0.5 (a tie
goes to "no object", as :mod:`subsetsearch.acquisition` breaks ties towards the
lowest class).

:func:`acquire_maps` takes every member at once; :class:`MapStats` and
:func:`stream_image_scores` take one member and one chunk of images at a time,
so memory grows with the chunk, never with the dataset or the ensemble.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from subsetsearch.acquisition import ACQUISITION_FUNCTIONS, acquire
from subsetsearch.stats import EnsembleStats

__all__ = ["MapStats", "acquire_maps", "stream_image_scores"]


class MapStats:
    """Streaming statistics of member centre maps over one chunk of images.

    Parameters
    ----------
    num_images, num_classes, height, width : int
        The shape ``(n, K, H, W)`` of every member's maps for this chunk.

    Examples
    --------
    >>> import numpy as np
    >>> stats = MapStats(1, 1, 1, 2)
    >>> stats.update(np.array([[[[0.9, 0.2]]]]))
    >>> stats.update(np.array([[[[0.1, 0.2]]]]))
    >>> scores, heat = stats.scores("variation_ratios")
    >>> scores.tolist(), heat.ravel().tolist()
    ([0.5], [0.5, 0.0])
    """

    def __init__(self, num_images: int, num_classes: int, height: int, width: int) -> None:
        self.shape = tuple(int(v) for v in (num_images, num_classes, height, width))
        if min(self.shape) < 1:
            raise ValueError(f"map shape (n, K, H, W) must be positive, got {self.shape}")
        self._stats = EnsembleStats(int(np.prod(self.shape)), 2)
        self.num_members = 0

    def update(self, maps: np.ndarray) -> None:
        """Add one member's maps.

        Parameters
        ----------
        maps : array-like of shape (n, K, H, W), float
            Probabilities in [0, 1] that an object of class k is centred at (h, w).

        Raises
        ------
        ValueError
            On a wrong shape, or values that are not finite or outside [0, 1]
            (the message says to apply a sigmoid to logits).
        """
        p = _check_maps(maps, rank=4, name="maps")
        if p.shape != self.shape:
            raise ValueError(f"maps must have shape {self.shape} (n, K, H, W), got {p.shape}")
        flat = p.reshape(-1)
        binary = np.empty((flat.size, 2), dtype=np.float64 if flat.dtype == np.float64 else np.float32)
        binary[:, 1] = flat
        binary[:, 0] = 1 - binary[:, 1]
        self._stats.update(binary)
        self.num_members += 1

    def scores(self, function: str, *, gt: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Image scores and per-location heatmaps of the members added so far.

        Parameters
        ----------
        function : {"entropy", "mutual_information", "variation_ratios", "error_count"}
        gt : array-like of shape (n, K, H, W), bool or 0/1, optional
            Ground-truth centre map (1 where an object of class k is centred);
            required by ``error_count`` only.

        Returns
        -------
        image_scores : ndarray of shape (n,), float64
            Maximum of the heatmaps over classes and locations.
        heatmaps : ndarray of shape (n, K, H, W), float64
        """
        if function not in ACQUISITION_FUNCTIONS:
            raise ValueError(
                f"unknown acquisition function {function!r}; choose one of: {', '.join(ACQUISITION_FUNCTIONS)}"
            )
        if self.num_members == 0:
            raise ValueError("no member has been added; call update() first")
        labels = None
        if function == "error_count":
            if gt is None:
                raise ValueError("error_count needs the ground-truth centre maps (gt=...)")
            labels = _check_gt(gt, self.shape).reshape(-1)
        heatmaps = acquire(self._stats, function, labels=labels).reshape(self.shape)
        return heatmaps.reshape(self.shape[0], -1).max(axis=1), heatmaps


def acquire_maps(
    maps: np.ndarray | Sequence[np.ndarray], function: str, *, gt: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Score images by the ensemble's disagreement on their centre maps.

    Parameters
    ----------
    maps : array-like of shape (M, n, K, H, W), float, or a sequence of M arrays (n, K, H, W)
        Member m's probability that an object of class k is centred at (h, w), in [0, 1].
    function : {"entropy", "mutual_information", "variation_ratios", "error_count"}
        The acquisition function, applied at each location to the binary
        distribution (1 - p, p).
    gt : array-like of shape (n, K, H, W), bool or 0/1, optional
        Ground-truth centre maps; required by ``error_count`` (the fraction of
        members whose vote, p > 0.5, differs from it).

    Returns
    -------
    image_scores : ndarray of shape (n,), float64
        The maximum of ``heatmaps`` over classes and locations.
    heatmaps : ndarray of shape (n, K, H, W), float64

    Raises
    ------
    ValueError
        For maps of the wrong rank, with values outside [0, 1] or not finite,
        members of different shapes, an unknown ``function``, or ``gt`` missing or of
        the wrong shape.

    Examples
    --------
    >>> import numpy as np
    >>> maps = np.array([0.0, 1.0]).reshape(2, 1, 1, 1, 1)  # two members disagree
    >>> scores, heat = acquire_maps(maps, "mutual_information")
    >>> bool(np.isclose(scores[0], np.log(2)))
    True
    """
    if isinstance(maps, np.ndarray) or not isinstance(maps, Sequence):
        maps = _check_maps(maps, rank=5, name="maps")
    if len(maps) == 0:
        raise ValueError("maps holds no member; give at least one (M >= 1)")
    first = _check_maps(maps[0], rank=4, name="maps[0]")
    stats = MapStats(*first.shape)
    for member in maps:
        stats.update(member)
    return stats.scores(function, gt=gt)


def stream_image_scores(
    chunks: Iterable[tuple[np.ndarray, Iterable[np.ndarray], np.ndarray | None]],
    function: str,
    *,
    num_images: int,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Score a dataset chunk by chunk, one member at a time.

    Parameters
    ----------
    chunks : iterable of (index, members, gt)
        ``index``: int array (n,) of the chunk's images; ``members``: an
        iterable yielding each member's maps (n, K, H, W) in turn (a generator
        running the network is fine); ``gt``: the chunk's ground-truth centre
        maps (n, K, H, W), or None unless ``function`` is ``error_count``.
    function : str
        As :func:`acquire_maps`.
    num_images : int
        N, the size of the dataset the indices point into.

    Yields
    ------
    index, image_scores, heatmaps
        Per chunk, as :func:`acquire_maps` on that chunk's maps; keep the
        heatmaps you need and drop the rest.
    """
    for index, members, gt in chunks:
        index = np.asarray(index, dtype=np.int64)
        if index.ndim != 1 or (index.size and (index.min() < 0 or index.max() >= num_images)):
            raise ValueError(f"chunk index must be a 1-D array of images in [0, {num_images})")
        stats: MapStats | None = None
        for member in members:
            member = _check_maps(member, rank=4, name="member maps")
            if stats is None:
                stats = MapStats(*member.shape)
            stats.update(member)
        if stats is None:
            raise ValueError("a chunk yielded no member maps")
        if stats.shape[0] != index.size:
            raise ValueError(f"chunk index has {index.size} images but its maps {stats.shape[0]}")
        image_scores, heatmaps = stats.scores(function, gt=gt)
        yield index, image_scores, heatmaps


def _check_maps(maps: np.ndarray, *, rank: int, name: str) -> np.ndarray:
    p = np.asarray(maps)
    layout = "(M, n, K, H, W)" if rank == 5 else "(n, K, H, W)"
    if p.ndim != rank:
        raise ValueError(f"{name} must have rank {rank} {layout}, got shape {p.shape}")
    if not np.issubdtype(p.dtype, np.floating):
        raise ValueError(f"{name} must be floating-point probabilities, got {p.dtype}")
    if p.size == 0:
        raise ValueError(f"{name} is empty (shape {p.shape}); give at least one member and one image")
    low, high = float(np.min(p)), float(np.max(p))
    if not (np.isfinite(low) and np.isfinite(high)) or low < 0 or high > 1:
        raise ValueError(
            f"{name} must hold probabilities in [0, 1], got values from {low} to {high}; apply a sigmoid to logits"
        )
    return p


def _check_gt(gt: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    g = np.asarray(gt)
    if g.shape != shape:
        raise ValueError(f"gt must have the maps' shape {shape} (n, K, H, W), got {g.shape}")
    if g.dtype != np.bool_ and not np.all((g == 0) | (g == 1)):
        raise ValueError("gt must be a binary centre map (bool or 0/1)")
    return g.astype(np.int64)
