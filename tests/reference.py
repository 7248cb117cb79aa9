"""Independent references for tests: every function computed directly on a stacked [M, N, C]
array, and files written from their format's spec.

This is the textbook formulation (the equations of docs/architecture.md, float64 throughout),
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


def binary_entropy(p: np.ndarray) -> np.ndarray:
    """-(p log p + (1 - p) log(1 - p)), with 0 log 0 = 0."""
    out = np.zeros_like(p, dtype=np.float64)
    for q in (p, 1 - p):
        q = q.astype(np.float64)
        out -= np.where(q > 0, q * np.log(np.where(q > 0, q, 1)), 0)
    return out


def direct_heatmaps(maps: np.ndarray, fn: str, gt: np.ndarray | None = None) -> np.ndarray:
    """The four functions at every location of stacked maps [M, n, K, H, W], written out directly."""
    p = maps.astype(np.float64)
    m = p.shape[0]
    mean = p.mean(axis=0)
    votes = (maps > 0.5).sum(axis=0)  # a member votes "object" above 0.5; a tie is "no object"
    if fn == "entropy":
        return binary_entropy(mean)
    if fn == "mutual_information":
        return np.maximum(binary_entropy(mean) - binary_entropy(p).mean(axis=0), 0)
    if fn == "variation_ratios":
        return 1 - np.maximum(votes, m - votes) / m
    agree = np.where(gt.astype(bool), votes, m - votes)
    return 1 - agree / m


def idx_bytes(array: np.ndarray) -> bytes:
    """An uint8 IDX file (the MNIST format) holding ``array``, written from the format's spec."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def normalised(members: np.ndarray) -> np.ndarray:
    members = np.asarray(members, dtype=np.float64)
    return members / members.sum(axis=2, keepdims=True)


def other_scores(members: np.ndarray, labels: np.ndarray | None, function: str, window: int = 10) -> np.ndarray:
    """The scores users compare with (least_confidence, margin, el2n, forgetting, dyn_unc,
    variability, hard_to_learn) computed from the whole [M, N, C] array as their papers define them."""
    p = normalised(members)  # [M, N, C]
    m, n, c = p.shape
    true = None if labels is None else p[:, np.arange(n), labels]  # [M, N]
    if function == "el2n":
        onehot = np.eye(c)[labels]
        return np.sqrt(((p - onehot) ** 2).sum(axis=2)).mean(axis=0)
    if function == "hard_to_learn":
        return 1.0 - true.mean(axis=0)
    if function == "variability":
        return true.std(axis=0)
    if function == "forgetting":
        # argmax with ties to the lowest class: np.argmax returns the first maximum
        correct = p.argmax(axis=2) == labels
        forgets = (correct[:-1] & ~correct[1:]).sum(axis=0).astype(float)
        return np.where(correct.any(axis=0), forgets, float(m))
    if function == "dyn_unc":
        stds = [true[s : s + window].std(axis=0) for s in range(m - window + 1)]
        return np.mean(stds, axis=0)
    mean = p.mean(axis=0)
    if function == "least_confidence":
        return 1.0 - mean.max(axis=1)
    if function == "margin":
        ordered = np.sort(mean, axis=1)
        return 1.0 - (ordered[:, -1] - ordered[:, -2])
    raise AssertionError(function)
