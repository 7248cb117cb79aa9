"""Selection: which samples the acquisition scores put into the subset."""

from __future__ import annotations

import numpy as np

__all__ = ["select"]


def select(
    scores: np.ndarray,
    k: int,
    *,
    exclude: np.ndarray | None = None,
    skip_top: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """Indices of the k highest-scoring candidate rows, best first.

    Candidates are the rows not in ``exclude``. The highest-scoring
    ``floor(skip_top * candidates)`` of them are first set aside as outliers
    (the paper's Table IV: with 12.5% skipped, a 50% budget takes ranks
    12.5%-62.5% from the top instead of 0%-50%).

    Parameters
    ----------
    scores : array-like of shape (N,), float
        Acquisition scores; higher is more informative. NaN is allowed only
        at excluded rows (rows no member scored).
    k : int
        How many rows to select, 0 <= k <= candidates left after the skip.
    exclude : array-like of int indices, or bool mask of shape (N,), optional
        Rows that cannot be selected (e.g. already in the subset).
    skip_top : float, default 0.0
        Fraction in [0, 1) of the candidates to set aside from the top.
    seed : int, default 0
        Breaks ties between equal scores by a seeded random order, never by
        position (datasets are often sorted by class).

    Returns
    -------
    indices : ndarray of shape (k,), int64

    Raises
    ------
    ValueError
        On a wrong shape, NaN among candidates, indices out of range, a
        ``skip_top`` outside [0, 1), or ``k`` larger than what is left.

    Examples
    --------
    >>> import numpy as np
    >>> from subsetsearch import select
    >>> select(np.array([0.1, 0.9, 0.5, 0.7]), 2).tolist()
    [1, 3]
    >>> select(np.array([0.1, 0.9, 0.5, 0.7]), 2, exclude=[1]).tolist()
    [3, 2]
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shape {scores.shape}")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
        raise ValueError(f"k must be a non-negative integer, got {k!r}")
    if not 0.0 <= skip_top < 1.0:
        raise ValueError(f"skip_top must be a fraction in [0, 1), got {skip_top!r}")
    candidate = ~exclusion_mask(exclude, scores.shape[0])
    if np.isnan(scores[candidate]).any():
        raise ValueError("scores contain NaN at rows that are not excluded (rows no member scored?)")
    rows = np.flatnonzero(candidate)
    skipped = int(skip_top * rows.size)
    if k > rows.size - skipped:
        raise ValueError(f"cannot select {k} rows: {rows.size} candidates, {skipped} of them skipped as outliers")
    tie_break = np.random.default_rng(seed).permutation(scores.shape[0])[rows]
    order = np.lexsort((tie_break, -scores[rows]))  # last key sorts first
    return rows[order[skipped : skipped + k]].astype(np.int64)


def exclusion_mask(exclude: np.ndarray | None, num_samples: int) -> np.ndarray:
    """Boolean mask (N,) of excluded rows from indices or a mask; ValueError if malformed."""
    mask = np.zeros(num_samples, dtype=bool)
    if exclude is None:
        return mask
    exclude = np.asarray(exclude)
    if exclude.dtype == bool:
        if exclude.shape != (num_samples,):
            raise ValueError(f"an exclude mask must have shape ({num_samples},), got {exclude.shape}")
        return exclude.copy()
    if exclude.ndim != 1 or not (np.issubdtype(exclude.dtype, np.integer) or exclude.size == 0):
        raise ValueError(f"exclude must be 1-D integer indices or a bool mask, got {exclude.shape} {exclude.dtype}")
    if exclude.size and (exclude.min() < 0 or exclude.max() >= num_samples):
        raise ValueError(f"exclude holds indices outside [0, {num_samples})")
    mask[exclude.astype(np.int64)] = True
    return mask
