"""Independent reference: the four functions computed directly on a stacked [M, N, C] array.

This is the textbook formulation (DESIGN.md's equations, float64 throughout),
written without anything from subsetsearch, so tests compare against it.
"""

from __future__ import annotations

import numpy as np


def plogp_sum(p: np.ndarray) -> np.ndarray:
    """-sum_c p log p over the last axis, with 0 log 0 = 0."""
    safe = np.where(p > 0, p, 1.0)
    return -(p * np.log(safe)).sum(axis=-1)


def direct_scores(members: np.ndarray, labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """members [M, N, C] of probabilities -> the four acquisition scores [N].

    Each stored row is divided by its sum first (float16 rows sum to 1 only to
    ~1e-3), as EnsembleStats does; votes are taken on the stored values.
    """
    probs = members.astype(np.float64)
    probs /= probs.sum(axis=-1, keepdims=True)
    m, n, c = probs.shape
    mean = probs.mean(axis=0)
    entropy = plogp_sum(mean)
    mutual_information = entropy - plogp_sum(probs).mean(axis=0)
    votes = np.zeros((n, c))
    for member in members:  # argmax on the stored values: ties to the lowest class
        votes[np.arange(n), np.argmax(member, axis=1)] += 1
    scores = {
        "entropy": entropy,
        "mutual_information": mutual_information,
        "variation_ratios": 1 - votes.max(axis=1) / m,
    }
    if labels is not None:
        scores["error_count"] = 1 - votes[np.arange(n), labels] / m
    return scores


def random_members(
    rng: np.random.Generator, m: int, n: int, c: int, dtype=np.float32, *, one_hot: bool = True
) -> np.ndarray:
    """Peaked member probabilities (rows sum to 1 in ``dtype``); with ``one_hot`` a
    quarter of the rows are exact one-hot vectors (zeros, ones and tied scores)."""
    probs = rng.dirichlet(np.full(c, 0.3), size=(m, n))
    if one_hot:
        probs[:, : n // 4] = np.eye(c)[rng.integers(0, c, size=(m, n // 4))]
    return probs.astype(dtype)
