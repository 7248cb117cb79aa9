"""The numbers behind the report and the paper's studies: NumPy arrays in, arrays (or small
dataclasses of them) out. Reading run directories is :mod:`subsetsearch.rundir`'s job."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Consensus",
    "checkpoint_consensus",
    "consecutive_pairs",
    "holm",
    "mean_sd",
    "paired_difference",
    "selected_accuracy",
    "student_t_quantile",
    "student_t_sf",
    "time_to_accuracy",
]


def selected_accuracy(
    predicted: np.ndarray, labels: np.ndarray, scored: np.ndarray, selected: np.ndarray
) -> tuple[float, float]:
    """Accuracy of an ensemble's predictions on the selected and on the unselected scored rows
    (the paper's Table II).

    Parameters
    ----------
    predicted : ndarray of shape (N,)
        The ensemble's predicted class of every pool row (only ``scored`` rows are read).
    labels : ndarray of shape (N,)
    scored : ndarray of int
        Rows the ensemble scored.
    selected : ndarray of int
        Rows acquired from them (a subset of ``scored``).

    Returns
    -------
    (accuracy on selected, accuracy on unselected) : NaN where that part is empty.
    """
    scored = np.asarray(scored, dtype=np.int64)
    chosen = np.isin(scored, selected)
    correct = np.asarray(predicted)[scored] == np.asarray(labels)[scored]

    def mean(mask: np.ndarray) -> float:
        return float(correct[mask].mean()) if mask.any() else float("nan")

    return mean(chosen), mean(~chosen)


@dataclass(frozen=True)
class Consensus:
    """Agreement between checkpoints on a set of samples (the paper's Figure 4).

    ``pairs[j]`` are the member names of consecutive checkpoints; ``pair_agree[j]`` how many of the
    ``samples`` both predict the same class for; ``all_agree`` how many every checkpoint agrees on.
    """

    pairs: list[tuple[str, str]]
    pair_agree: np.ndarray
    all_agree: int
    samples: int


def consecutive_pairs(names: list[str]) -> list[tuple[int, int]]:
    """Positions of consecutive checkpoints of the same training run in member names such as
    ``run_0/epoch_012`` (members of other runs, or ``run_R/best``, pair with nothing)."""
    runs: dict[str, list[tuple[int, int]]] = {}
    for position, name in enumerate(names):
        run, _, tail = name.partition("/")
        if tail.startswith("epoch_"):
            runs.setdefault(run, []).append((int(tail[len("epoch_") :]), position))
    pairs = []
    for run in sorted(runs, key=lambda r: (len(r), r)):  # run_2 before run_10
        members = sorted(runs[run])
        pairs += [(a[1], b[1]) for a, b in itertools.pairwise(members)]
    return pairs


def checkpoint_consensus(votes: np.ndarray, names: list[str], rows: np.ndarray) -> Consensus:
    """How many of ``rows`` (positions into ``votes``' columns) every consecutive pair of checkpoints
    agrees on, and how many all the checkpoints of the first run agree on.

    Parameters
    ----------
    votes : ndarray of shape (M, n)
        Predicted class of each member on each scored row.
    names : list of M str
        Member names (``run_R/epoch_EEE``).
    rows : ndarray of int
        Columns to count (e.g. the unselected samples).
    """
    votes = np.asarray(votes)[:, np.asarray(rows, dtype=np.int64)]
    pairs = consecutive_pairs(names)
    agree = np.array([int(np.sum(votes[a] == votes[b])) for a, b in pairs], dtype=np.int64)
    first_run = [p for p, name in enumerate(names) if name.split("/")[0] == names[0].split("/")[0]] if names else []
    if first_run:
        run_votes = votes[first_run]
        all_agree = int(np.sum(np.all(run_votes == run_votes[0], axis=0)))
    else:
        all_agree = 0
    return Consensus([(names[a], names[b]) for a, b in pairs], agree, all_agree, votes.shape[1])


def mean_sd(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1) of trials; NaN where undefined (no value, or
    one for the sd).

    >>> mean_sd([2.0, 4.0, 6.0])  # sd = sqrt((2**2 + 0 + 2**2) / (3 - 1))
    (4.0, 2.0)
    """
    a = np.asarray(values, dtype=np.float64)
    mean = float(a.mean()) if a.size else float("nan")
    return mean, float(a.std(ddof=1)) if a.size > 1 else float("nan")


def _student_t_central(t: float, df: int) -> float:
    """P(|T| <= t) for Student's t with ``df`` degrees of freedom, by the finite series for integer
    ``df`` (Abramowitz and Stegun 26.7.3, 26.7.4)."""
    theta = math.atan(t / math.sqrt(df))
    c2, term, total = math.cos(theta) ** 2, 1.0, 1.0
    if df % 2 == 0:  # sin(theta) * (1 + 1/2 cos^2 + 1*3/(2*4) cos^4 + ... up to cos^(df-2))
        for k in range(2, df, 2):
            term *= c2 * (k - 1) / k
            total += term
        return math.sin(theta) * total
    if df == 1:
        return 2 * theta / math.pi
    # 2/pi * (theta + sin cos (1 + 2/3 cos^2 + 2*4/(3*5) cos^4 + ... up to cos^(df-3)))
    for k in range(3, df - 1, 2):
        term *= c2 * (k - 1) / k
        total += term
    return 2 / math.pi * (theta + math.sin(theta) * math.cos(theta) * total)


def student_t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile (``p`` in (0.5, 1)) of Student's t with ``df`` >= 1 (integer) degrees of
    freedom, by bisection on its distribution function; no SciPy needed to read a report.

    >>> round(student_t_quantile(0.975, 2), 4)  # the tables' 4.303
    4.3027
    """
    if not 0.5 < p < 1 or df < 1 or int(df) != df:
        raise ValueError(f"need 0.5 < p < 1 and an integer df >= 1, got p={p!r}, df={df!r}")
    target, low, high = 2 * p - 1, 0.0, 1.0
    while _student_t_central(high, int(df)) < target:
        high *= 2
    for _ in range(200):
        middle = (low + high) / 2
        if middle in (low, high):
            break
        low, high = (middle, high) if _student_t_central(middle, int(df)) < target else (low, middle)
    return (low + high) / 2


def student_t_sf(t: float, df: int) -> float:
    """P(T > ``t``) for Student's t with ``df`` >= 1 (integer) degrees of freedom: the one-sided
    p-value of a t statistic (twice it, of ``|t|``, is the two-sided one).

    >>> round(student_t_sf(4.302652729911275, 2), 6)  # the 97.5% quantile leaves 2.5% above it
    0.025
    """
    if df < 1 or int(df) != df:
        raise ValueError(f"need an integer df >= 1, got {df!r}")
    if math.isnan(t):
        raise ValueError("t is NaN")
    if math.isinf(t):
        return 0.0 if t > 0 else 1.0
    central = _student_t_central(abs(t), int(df))
    return (1 - central) / 2 if t >= 0 else (1 + central) / 2


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjustment of a family's p-values (controls the family-wise error rate):
    the i-th smallest of m becomes the running maximum of (m - j + 1) * p_(j) over j <= i, capped at
    1; each adjusted value is returned in its input position.

    >>> holm([0.01, 0.04, 0.03])  # 3 * 0.01; max(0.03, 2 * 0.03); max(0.06, 1 * 0.04)
    [0.03, 0.06, 0.06]
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted, running = [0.0] * m, 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def paired_difference(a: Mapping[object, float], b: Mapping[object, float]) -> dict:
    """``a - b`` paired over the keys (seeds, trials) both hold: mean, sample sd (ddof=1), n, the
    keys used, and the 95% Student-t interval of the mean difference.

    Parameters
    ----------
    a, b : mapping of key -> value
        One value per seed; a key only one side holds is left out.

    Returns
    -------
    dict
        ``mean`` and ``sd`` (None without a value; ``sd`` None for one), ``n``, ``keys`` (sorted),
        and ``ci95``: ``[low, high]``, or None for n < 2.

    Examples
    --------
    >>> d = paired_difference({0: 3.0, 1: 5.0}, {0: 1.0, 1: 2.0, 2: 9.0})
    >>> d["mean"], d["n"], d["keys"]
    (2.5, 2, [0, 1])
    """
    keys = sorted(set(a) & set(b), key=lambda k: (str(type(k)), k))
    diff = np.array([a[k] - b[k] for k in keys], dtype=np.float64)
    mean, sd = mean_sd(list(diff))
    out = {
        "mean": None if np.isnan(mean) else mean,
        "sd": None if np.isnan(sd) else sd,
        "n": len(keys),
        "keys": keys,
        "ci95": None,
    }
    if diff.size > 1:
        half = float(student_t_quantile(0.975, diff.size - 1) * sd / np.sqrt(diff.size))
        out["ci95"] = [mean - half, mean + half]
    return out


def time_to_accuracy(history: list[dict], target: float, key: str = "val_accuracy") -> float | None:
    """Training seconds at the end of the first epoch whose ``key`` reaches ``target``; None if none does."""
    for entry in history:
        value = entry.get(key)
        if value is not None and value >= target:
            return float(entry["seconds"])
    return None
