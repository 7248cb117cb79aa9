"""Class balance: each class's share of a subset against its share of the pool, and the classes whose
share is off by more than a factor of two (flagged in the run's summary, ``score``'s summary and the
report)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["BALANCE_ADVICE", "ClassShare", "class_shares", "how_far_off", "imbalance_line", "imbalanced_classes"]

#: A class is flagged when its share of the subset is below ``LOW`` times its share of the pool, or
#: above ``HIGH`` times it.
LOW, HIGH = 0.5, 2.0

#: What a flagged subset's reader can do about it.
BALANCE_ADVICE = (
    "Hard-first scores often skew a subset by class: search.balance: class (score --balance class) keeps the "
    "pool's proportions; see 'Class balance' in the run guide (docs/guides/run.md)"
)


def class_shares(
    labels: np.ndarray, index: np.ndarray, *, multiplicity: np.ndarray | None = None, num_classes: int | None = None
) -> np.ndarray:
    """Share of each class in a (multi)set of rows; a row counts its multiplicity.

    Parameters
    ----------
    labels : ndarray of shape (N,) or (N, num_classes)
        Class of every pool row, or (detection) how many boxes of each class every image holds.
    index : array-like of int, shape (k,)
        Distinct rows of the subset.
    multiplicity : array-like of int, shape (k,), optional
        How often each row appears (1 each by default).
    num_classes : int, optional
        Classes counted (by default one more than the largest label, or ``labels.shape[1]``).

    Returns
    -------
    shares : ndarray of shape (num_classes,)
        Sums to 1 (all zeros for an empty subset).

    Examples
    --------
    >>> import numpy as np
    >>> class_shares(np.array([0, 0, 1, 2]), [0, 2], multiplicity=[3, 1]).tolist()
    [0.75, 0.25, 0.0]
    """
    labels = np.asarray(labels)
    index = np.asarray(index, dtype=np.int64)
    weights = np.ones(len(index)) if multiplicity is None else np.asarray(multiplicity, dtype=np.float64)
    if labels.ndim == 2:
        k = labels.shape[1] if num_classes is None else num_classes
        counts = (labels[index] * weights[:, None]).sum(axis=0) if len(index) else np.zeros(k)
    else:
        k = (int(labels.max()) + 1 if labels.size else 0) if num_classes is None else num_classes
        counts = np.bincount(labels[index], weights=weights, minlength=k).astype(np.float64)
    total = counts.sum()
    return counts / total if total else counts


def how_far_off(subset: np.ndarray | float, pool: np.ndarray | float) -> np.ndarray:
    """How far a class's share of a subset is from its share of the pool, by ratio: |log(subset/pool)|
    (a class absent from the subset counts as a share of 1e-12).

    Examples
    --------
    >>> [round(float(how_far_off(s, 0.1)), 6) for s in (0.2, 0.05)]  # twice and half: equally far
    [0.693147, 0.693147]
    """
    return np.abs(np.log((np.asarray(subset, dtype=np.float64) + 1e-12) / np.asarray(pool, dtype=np.float64)))


@dataclass(frozen=True)
class ClassShare:
    """A class whose share of the subset is off its share of the pool by more than a factor of two."""

    label: int
    subset: float  # share of the subset, 0..1
    pool: float  # share of the pool, 0..1

    @property
    def below(self) -> bool:
        """True when the class is under-represented (below half its pool share)."""
        return self.subset < LOW * self.pool


def imbalanced_classes(
    labels: np.ndarray, index: np.ndarray, *, multiplicity: np.ndarray | None = None
) -> list[ClassShare]:
    """The classes whose share of the subset is below half, or above twice, their share of the pool
    (classes the pool lacks are never flagged), the most off first.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.repeat([0, 1, 2, 3], 25)
    >>> [(c.label, c.subset, c.below) for c in imbalanced_classes(labels, np.arange(40))]
    [(2, 0.0, True), (3, 0.0, True), (0, 0.625, False)]
    """
    labels = np.asarray(labels)
    pool = class_shares(labels, np.arange(len(labels)))
    subset = class_shares(labels, index, multiplicity=multiplicity, num_classes=len(pool))
    off = [
        ClassShare(c, float(subset[c]), float(pool[c]))
        for c in range(len(pool))
        if pool[c] > 0 and (subset[c] < LOW * pool[c] or subset[c] > HIGH * pool[c])
    ]
    return sorted(off, key=lambda s: (-float(how_far_off(s.subset, s.pool)), s.label))


def imbalance_line(flags: Sequence[ClassShare], class_names: Sequence[str] | None = None, *, limit: int = 4) -> str:
    """One line naming the flagged classes with their shares (the ``limit`` most off, then a count),
    and what to do; empty when nothing is flagged.

    Examples
    --------
    >>> imbalance_line([ClassShare(3, 0.02, 0.1)], ["cat", "dog", "fox", "owl"]).split(". ")[0]
    "'owl' 2.0% of the subset against 10.0% of the pool (below half)"
    """
    if not flags:
        return ""

    def name(c: int) -> str:
        return f"'{class_names[c]}'" if class_names is not None and c < len(class_names) else f"class {c}"

    parts = [
        f"{name(s.label)} {100 * s.subset:.1f}% of the subset against {100 * s.pool:.1f}% of the pool "
        f"({'below half' if s.below else 'above twice'})"
        for s in flags[:limit]
    ]
    more = f" and {len(flags) - limit} more" if len(flags) > limit else ""
    return f"{'; '.join(parts)}{more}. {BALANCE_ADVICE}"
