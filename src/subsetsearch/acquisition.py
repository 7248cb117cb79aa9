"""Acquisition functions: how much the ensemble disagrees about each sample.

With M members' softmax outputs p_m(y|x), p̄ = mean_m p_m, natural log and
0 log 0 = 0 (docs/architecture.md, "Core contracts"):

- ``entropy``            H[p̄] = -sum_c p̄_c log p̄_c
- ``mutual_information`` H[p̄] - mean_m H[p_m]                      (BALD)
- ``variation_ratios``   1 - (votes of the modal class) / M
- ``error_count``        1 - (members whose argmax == y) / M       (needs labels)

A vote is a member's argmax, ties going to the lowest class index.

Beside them, the scores users compare them with (higher = selected first; p_m[y] is member m's
probability of the label; :class:`~subsetsearch.dynamics.TrainingDynamics` streams what the
label-based ones need):

- ``least_confidence``   1 - max_c p̄_c
- ``margin``             1 - (p̄_(1) - p̄_(2)), the two largest entries of p̄
- ``el2n``               mean_m ||p_m - onehot(y)||_2                 (Paul et al. 2021)
- ``forgetting``         times right at member m-1 and wrong at m; M if never right (Toneva et al. 2019)
- ``dyn_unc``            mean over windows of J consecutive members of std(p_m[y])   (He et al. 2023)
- ``variability``        std_m p_m[y]                                (cartography, Swayamdipta et al. 2020)
- ``hard_to_learn``      1 - mean_m p_m[y]                           (cartography)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np

from subsetsearch.dynamics import DEFAULT_WINDOW, DYNAMICS_FUNCTIONS, ORDERED_FUNCTIONS, TrainingDynamics
from subsetsearch.errors import SubsetsearchWarning
from subsetsearch.internal.validation import check_labels
from subsetsearch.stats import EnsembleStats

__all__ = ["ACQUISITION_FUNCTIONS", "FUNCTIONS", "NEEDS_LABELS", "NEEDS_ORDER", "acquire"]

#: The paper's four functions, in its order.
ACQUISITION_FUNCTIONS = ("entropy", "mutual_information", "variation_ratios", "error_count")
#: Scores of the mean prediction that users know from uncertainty sampling (no labels needed).
MEAN_FUNCTIONS = ("least_confidence", "margin")
#: Every function :func:`acquire` computes: the paper's, then the others.
FUNCTIONS = ACQUISITION_FUNCTIONS + MEAN_FUNCTIONS + DYNAMICS_FUNCTIONS
#: Functions that need the pool's labels.
NEEDS_LABELS = ("error_count", *DYNAMICS_FUNCTIONS)
#: Functions that need the members in order.
NEEDS_ORDER = ORDERED_FUNCTIONS
#: Functions that measure disagreement between members: 0 for every sample with one member.
DISAGREEMENT_FUNCTIONS = ("mutual_information", "variation_ratios")


def acquire(
    predictions: EnsembleStats | TrainingDynamics | np.ndarray | Sequence[np.ndarray],
    function: str,
    *,
    labels: np.ndarray | None = None,
    from_logits: bool = False,
    window: int | None = None,
) -> np.ndarray:
    """Score every sample of the pool with an acquisition function.

    Parameters
    ----------
    predictions : EnsembleStats, TrainingDynamics, array-like of shape (M, N, C), or a sequence of M arrays (N, C)
        The accumulated member predictions (the streaming form: members added one at a time to
        an :class:`EnsembleStats`, or to a :class:`~subsetsearch.dynamics.TrainingDynamics` for
        the label-based functions), or every member's probabilities at once (float16/32/64), in
        member order.
    function : str
        One of :data:`FUNCTIONS` (see the module's docstring); higher means selected first.
    labels : array-like of shape (N,), int, optional
        Ground-truth classes in [0, C); required by ``error_count`` and the label-based functions
        given arrays (a TrainingDynamics holds its own).
    from_logits : bool, default False
        ``predictions`` given as arrays hold logits: a stable softmax is applied first.
    window : int, optional
        ``dyn_unc``'s window J, from 2 to the number of members (given arrays; default 10). A
        TrainingDynamics keeps its own: a different one given here is an error.

    Returns
    -------
    scores : ndarray of shape (N,), float64
        NaN for rows no member has scored.

    Raises
    ------
    ValueError
        For an unknown ``function`` (the message lists the valid ones), labels missing, of the
        wrong length, not integers, or out of range; arrays that are not probabilities;
        ``from_logits`` with an EnsembleStats (which holds probabilities already); or, with a
        TrainingDynamics, ``labels`` or a ``window`` other than the ones it holds (it was built
        with its own: the ones given would be ignored).

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
    if function not in FUNCTIONS:
        raise ValueError(f"unknown acquisition function {function!r}; choose one of: {', '.join(FUNCTIONS)}")
    if isinstance(predictions, (EnsembleStats, TrainingDynamics)) and from_logits:
        raise ValueError(
            f"from_logits applies to arrays of predictions; a {type(predictions).__name__} holds probabilities"
        )
    if function in DYNAMICS_FUNCTIONS:
        return _dynamics_scores(predictions, function, labels, from_logits, window)
    if isinstance(predictions, TrainingDynamics):
        raise ValueError(
            f"{function} needs an EnsembleStats (or the member arrays); a TrainingDynamics holds labels only"
        )
    stats = (
        predictions
        if isinstance(predictions, EnsembleStats)
        else EnsembleStats.from_members(predictions, from_logits=from_logits)
    )
    if function in DISAGREEMENT_FUNCTIONS:
        scored = stats.member_counts[stats.member_counts > 0]
        if scored.size and scored.max() == 1:
            warnings.warn(
                f"{function} is 0 for every sample: one member cannot disagree with itself, so a subset chosen by it "
                "is a seeded random choice; give two or more members, or use entropy",
                SubsetsearchWarning,
                stacklevel=2,
            )
    with np.errstate(invalid="ignore", divide="ignore"):
        return _STATS_SCORES[function](stats, labels)


def _entropy(stats: EnsembleStats, labels: np.ndarray | None) -> np.ndarray:
    return stats.entropy_of_mean()


def _mutual_information(stats: EnsembleStats, labels: np.ndarray | None) -> np.ndarray:
    # >= 0 by Jensen; clip the last-bit rounding of the fixed-point sums. One member agrees with
    # itself: 0 exactly, not the difference of two roundings (about 1e-8, which a top-k would rank)
    disagreement = np.maximum(stats.entropy_of_mean() - stats.mean_member_entropy(), 0.0)
    return np.where(stats.member_counts == 1, 0.0, disagreement)


def _variation_ratios(stats: EnsembleStats, labels: np.ndarray | None) -> np.ndarray:
    return 1.0 - stats.vote_counts.max(axis=1) / stats.member_counts


def _error_count(stats: EnsembleStats, labels: np.ndarray | None) -> np.ndarray:
    labels = check_labels(labels, stats.num_samples, stats.num_classes)
    return 1.0 - stats.vote_counts[np.arange(stats.num_samples), labels] / stats.member_counts


#: Rows of p̄ held at a time by least_confidence and margin (float64: 64 MB at C = 1,000).
_MEAN_BLOCK_ELEMENTS = 1 << 23


def _of_mean(
    score_rows: Callable[[np.ndarray], np.ndarray],
) -> Callable[[EnsembleStats, np.ndarray | None], np.ndarray]:
    """A score of p̄, computed a block of rows at a time (p̄ of the pool is never held whole)."""

    def scores(stats: EnsembleStats, labels: np.ndarray | None) -> np.ndarray:
        out = np.empty(stats.num_samples, dtype=np.float64)
        step = max(1, _MEAN_BLOCK_ELEMENTS // stats.num_classes)
        for start in range(0, stats.num_samples, step):
            rows = slice(start, start + step)
            out[rows] = score_rows(stats.mean_probs(rows))
        return out

    return scores


def _least_confidence_of(mean: np.ndarray) -> np.ndarray:
    return 1.0 - mean.max(axis=1)


def _margin_of(mean: np.ndarray) -> np.ndarray:
    top_two = np.partition(mean, -2, axis=1)[:, -2:]
    return 1.0 - (top_two[:, 1] - top_two[:, 0])


#: The functions of the ensemble statistics, by name (the label-based ones are TrainingDynamics').
_STATS_SCORES: dict[str, Callable[[EnsembleStats, np.ndarray | None], np.ndarray]] = {
    "entropy": _entropy,
    "mutual_information": _mutual_information,
    "variation_ratios": _variation_ratios,
    "error_count": _error_count,
    "least_confidence": _of_mean(_least_confidence_of),
    "margin": _of_mean(_margin_of),
}


def _dynamics_scores(predictions, function: str, labels, from_logits: bool, window: int | None) -> np.ndarray:
    if isinstance(predictions, TrainingDynamics):
        if window is not None and window != predictions.window:
            raise ValueError(
                f"window={window}, but the TrainingDynamics were kept with window {predictions.window}; "
                f"give window={predictions.window} (or none), or keep new statistics with the window you want"
            )
        if labels is not None and not np.array_equal(np.asarray(labels), predictions.labels):
            raise ValueError(
                "labels differ from the ones the TrainingDynamics were kept with; give those labels (or none), "
                "or keep new statistics with these"
            )
        return predictions.scores(function)
    if isinstance(predictions, EnsembleStats):
        raise ValueError(
            f"{function} needs each member's probability of the label: give a TrainingDynamics or the member "
            "arrays, not an EnsembleStats (which keeps sums over members only)"
        )
    members = predictions if isinstance(predictions, np.ndarray) else list(predictions)
    if len(members) == 0:
        raise ValueError("give at least one member")
    num_samples, num_classes = np.shape(members[0])
    labels = check_labels(labels, num_samples, num_classes, function=function)
    window = DEFAULT_WINDOW if window is None else window
    dynamics = TrainingDynamics(labels, num_classes=num_classes, window=window, ordered=function in ORDERED_FUNCTIONS)
    for member in members:
        dynamics.update(np.asarray(member), from_logits=from_logits)
    with np.errstate(invalid="ignore", divide="ignore"):
        return dynamics.scores(function)
