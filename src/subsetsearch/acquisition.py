"""Acquisition functions: how much the ensemble disagrees about each sample.

With M members' softmax outputs p_m(y|x), p̄ = mean_m p_m, natural log and
0 log 0 = 0 (docs/architecture.md, "Core contracts"):

- ``entropy``            H[p̄] = -sum_c p̄_c log p̄_c
- ``mutual_information`` H[p̄] - mean_m H[p_m]                      (BALD)
- ``variation_ratios``   1 - (votes of the modal class) / M
- ``error_count``        1 - (members whose argmax == y) / M       (needs labels)

A vote is a member's argmax, ties going to the lowest class index.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from subsetsearch.stats import EnsembleStats

__all__ = ["ACQUISITION_FUNCTIONS", "acquire"]

#: Names accepted by :func:`acquire`, in the paper's order.
ACQUISITION_FUNCTIONS = ("entropy", "mutual_information", "variation_ratios", "error_count")


def acquire(
    predictions: EnsembleStats | np.ndarray | Sequence[np.ndarray],
    function: str,
    *,
    labels: np.ndarray | None = None,
    from_logits: bool = False,
) -> np.ndarray:
    """Score every sample of the pool with an acquisition function.

    Parameters
    ----------
    predictions : EnsembleStats, or array-like of shape (M, N, C), or a sequence of M arrays (N, C)
        The accumulated member predictions (the streaming form: members added one at a time to
        an :class:`EnsembleStats`), or every member's probabilities at once (float16/32/64).
    function : {"entropy", "mutual_information", "variation_ratios", "error_count"}
        The acquisition function; higher means more informative.
    labels : array-like of shape (N,), int, optional
        Ground-truth classes in [0, C); required by ``error_count`` only.
    from_logits : bool, default False
        ``predictions`` given as arrays hold logits: a stable softmax is applied first.

    Returns
    -------
    scores : ndarray of shape (N,), float64
        NaN for rows no member has scored.

    Raises
    ------
    ValueError
        For an unknown ``function`` (the message lists the valid ones), labels missing, of the
        wrong length, not integers, or out of range; arrays that are not probabilities; or
        ``from_logits`` with an EnsembleStats (which holds probabilities already).

    Examples
    --------
    >>> import numpy as np
    >>> from subsetsearch import EnsembleStats, acquire
    >>> stats = EnsembleStats(num_samples=1, num_classes=2)
    >>> stats.update(np.array([[1.0, 0.0]]))
    >>> stats.update(np.array([[0.0, 1.0]]))
    >>> round(float(acquire(stats, "mutual_information")[0]), 12) == round(float(np.log(2)), 12)
    True
    >>> members = np.array([[[1.0, 0.0]], [[0.0, 1.0]]])  # the same two members as one (M, N, C) array
    >>> float(acquire(members, "variation_ratios")[0])
    0.5
    """
    if function not in ACQUISITION_FUNCTIONS:
        raise ValueError(
            f"unknown acquisition function {function!r}; choose one of: {', '.join(ACQUISITION_FUNCTIONS)}"
        )
    if isinstance(predictions, EnsembleStats):
        if from_logits:
            raise ValueError("from_logits applies to arrays of predictions; an EnsembleStats holds probabilities")
        stats = predictions
    else:
        stats = EnsembleStats.from_members(predictions, from_logits=from_logits)
    with np.errstate(invalid="ignore", divide="ignore"):
        if function == "entropy":
            return stats.entropy_of_mean()
        if function == "mutual_information":
            # >= 0 by Jensen; clip the last-bit rounding of the fixed-point sums
            return np.maximum(stats.entropy_of_mean() - stats.mean_member_entropy(), 0.0)
        votes, counts = stats.vote_counts, stats.member_counts
        if function == "variation_ratios":
            return 1.0 - votes.max(axis=1) / counts
        labels = check_labels(labels, stats.num_samples, stats.num_classes)
        return 1.0 - votes[np.arange(stats.num_samples), labels] / counts


def check_labels(labels: np.ndarray | None, num_samples: int, num_classes: int) -> np.ndarray:
    """Return ``labels`` as int64 (N,) or raise ValueError saying what is wrong."""
    if labels is None:
        raise ValueError("error_count needs the labels of the pool (labels=..., --labels on the command line)")
    labels = np.asarray(labels)
    if labels.ndim != 1 or labels.shape[0] != num_samples:
        raise ValueError(f"labels must have shape ({num_samples},), got {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"labels must be integers, got {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got values from {labels.min()} to {labels.max()}")
    return labels.astype(np.int64, copy=False)
