"""Selection: which samples the acquisition scores put into the subset."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from subsetsearch.internal.validation import check_fraction, check_integer

__all__ = [
    "BALANCES",
    "DIRECTIONS",
    "Coverage",
    "SelectionRule",
    "all_members_disagree",
    "class_quotas",
    "select",
    "select_chunks",
    "selectable",
]

#: ``balance``: ``none`` (one budget for the whole pool) or ``class`` (a quota per class).
BALANCES = ("none", "class")
#: ``direction``: keep the ``highest`` scores first (the paper's rule) or the ``lowest``.
DIRECTIONS = ("highest", "lowest")


@dataclass(frozen=True)
class Coverage:
    """Coverage-centric selection (Zheng et al., ICLR 2023): set aside the ``prune_hardest`` share
    of highest scores, split the rest of the score range into ``strata`` equal-width strata, and
    spread the budget evenly over them (a stratum smaller than its share gives the rest to the
    others, the smallest first), sampling at random within each.

    Parameters
    ----------
    strata : int
        K >= 1.
    prune_hardest : float, default 0.0
        beta in [0, 1).
    """

    strata: int
    prune_hardest: float = 0.0

    def __post_init__(self) -> None:
        check_integer(self.strata, "coverage strata", minimum=1)
        check_fraction(self.prune_hardest, "coverage prune_hardest")


@dataclass(frozen=True)
class SelectionRule:
    """The options of :func:`select` besides the budget and the seed, checked together: what a run
    directory and a scores file record, and what the summaries put in words.

    Parameters
    ----------
    skip_top, balance, coverage, direction
        As :func:`select`. ``direction="lowest"`` with ``coverage`` is refused: coverage samples
        every stratum at random, so the direction would change nothing.

    Examples
    --------
    >>> SelectionRule().describe()
    'highest scores first'
    >>> SelectionRule(balance="class", coverage=Coverage(20, 0.1)).describe()
    "coverage (20 strata, the highest 10% of scores pruned), per class in the pool's proportions"
    """

    skip_top: float = 0.0
    balance: str = "none"
    coverage: Coverage | None = None
    direction: str = "highest"

    def __post_init__(self) -> None:
        check_fraction(self.skip_top, "skip_top")
        if self.balance not in BALANCES:
            raise ValueError(f"balance must be one of {', '.join(BALANCES)}, got {self.balance!r}")
        if self.direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {', '.join(DIRECTIONS)}, got {self.direction!r}")
        if self.coverage is not None and not isinstance(self.coverage, Coverage):
            raise ValueError(f"coverage must be a Coverage(strata=K, prune_hardest=beta), got {self.coverage!r}")
        if self.coverage is not None and self.direction == "lowest":
            raise ValueError(
                "direction='lowest' changes nothing with coverage, which samples every stratum at random; drop one"
            )

    @property
    def plain(self) -> bool:
        """True for the paper's rule: highest first, one budget, no coverage (``skip_top`` aside)."""
        return self.balance == "none" and self.coverage is None and self.direction == "highest"

    def options(self) -> dict:
        """The keyword arguments of :func:`select` this rule sets."""
        return {
            "skip_top": self.skip_top,
            "balance": self.balance,
            "coverage": self.coverage,
            "direction": self.direction,
        }

    def to_json(self) -> dict:
        """The rule as plain values (``coverage`` a mapping or None), for files."""
        coverage = self.coverage
        return {
            "balance": self.balance,
            "coverage": None
            if coverage is None
            else {"strata": coverage.strata, "prune_hardest": coverage.prune_hardest},
            "direction": self.direction,
            "skip_top": self.skip_top,
        }

    @classmethod
    def from_json(cls, values: dict) -> SelectionRule:
        """The rule of :meth:`to_json`'s mapping (or a run's ``search`` section); absent keys take
        their defaults, so a mapping written before an option existed reads as it ran."""
        coverage = values.get("coverage")
        return cls(
            skip_top=values.get("skip_top", 0.0),
            balance=values.get("balance", "none"),
            coverage=None if coverage is None else Coverage(coverage["strata"], coverage.get("prune_hardest", 0.0)),
            direction=values.get("direction", "highest"),
        )

    def describe(self) -> str:
        """The rule in words, for the summaries of ``score`` and ``run``, and the report."""
        if self.coverage is None:
            words = f"{self.direction} scores first"
        else:
            words = f"coverage ({self.coverage.strata} strata"
            if self.coverage.prune_hardest:
                words += f", the highest {100 * self.coverage.prune_hardest:g}% of scores pruned"
            words += ")"
        if self.balance == "class":
            words += ", per class in the pool's proportions"
        if self.skip_top:
            words += f", the top {100 * self.skip_top:g}% set aside"
        return words

    def capacity(self, candidates: int | np.ndarray) -> int:
        """How many rows :func:`select` can take from ``candidates`` (a count, or one per class with
        ``balance="class"``): :func:`selectable` with this rule's outlier shares."""
        pruned = 0.0 if self.coverage is None else self.coverage.prune_hardest
        return selectable(candidates, skip_top=self.skip_top, prune_hardest=pruned)


def selectable(candidates: int | np.ndarray, *, skip_top: float = 0.0, prune_hardest: float = 0.0) -> int:
    """How many of ``candidates`` rows are left to :func:`select` once the ``skip_top`` share and
    then coverage's ``prune_hardest`` share of the rest are set aside (each rounded down, as
    :func:`select` counts them); with an array of per-class counts (``balance="class"``), the sum
    over the classes.

    Examples
    --------
    >>> selectable(100, skip_top=0.1, prune_hardest=0.25)  # 100 - 10, then 90 - 22
    68
    >>> selectable(np.array([10, 7]), prune_hardest=0.2)  # 10 - 2 and 7 - 1
    14
    """
    counts = np.atleast_1d(np.asarray(candidates, dtype=np.int64))
    rest = counts - np.floor(skip_top * counts).astype(np.int64)
    return int((rest - np.floor(prune_hardest * rest).astype(np.int64)).sum())


def select(
    scores: np.ndarray,
    k: int,
    *,
    exclude: np.ndarray | None = None,
    skip_top: float = 0.0,
    seed: int = 0,
    balance: str = "none",
    labels: np.ndarray | None = None,
    coverage: Coverage | None = None,
    direction: str = "highest",
) -> np.ndarray:
    """Indices of the k candidate rows the scores choose, best first: by default the k highest.

    Candidates are the rows not in ``exclude``. The highest-scoring
    ``floor(skip_top * candidates)`` of them are first set aside as outliers
    (the paper's Table IV: with 12.5% skipped, a 50% budget takes ranks
    12.5%-62.5% from the top instead of 0%-50%). With ``balance="class"`` the
    budget is split into per-class quotas (:func:`class_quotas`) and the
    outlier rules apply within each class; ``coverage`` replaces the top-k by
    coverage-centric sampling (:class:`Coverage`); ``direction="lowest"``
    keeps the lowest scores first. Without them the result is the plain top-k.

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
        position (datasets are often sorted by class); seeds coverage's sampling.
    balance : {"none", "class"}, default "none"
        ``"class"``: quotas proportional to each class's count in ``labels``,
        each filled by that class's best rows.
    labels : array-like of int, shape (N,), optional
        The class of every row; needed by ``balance="class"``.
    coverage : Coverage, optional
        Coverage-centric selection within the budget (and within each class).
    direction : {"highest", "lowest"}, default "highest"
        Which end of the scores is taken first (``skip_top`` and coverage's
        ``prune_hardest`` always set aside the highest).

    Returns
    -------
    indices : ndarray of shape (k,), int64

    Raises
    ------
    ValueError
        On a wrong shape, NaN among candidates, indices out of range, a
        ``skip_top`` outside [0, 1), ``k`` larger than what is left
        (:func:`selectable`), ``balance="class"`` without labels or with
        ``0 < k`` below the number of classes, or ``direction="lowest"`` with
        ``coverage`` (it would change nothing).

    Examples
    --------
    >>> import numpy as np
    >>> from subsetsearch import select
    >>> select(np.array([0.1, 0.9, 0.5, 0.7]), 2).tolist()
    [1, 3]
    >>> select(np.array([0.1, 0.9, 0.5, 0.7]), 2, exclude=[1]).tolist()
    [3, 2]
    >>> select(np.array([0.1, 0.9, 0.5, 0.7]), 2, direction="lowest").tolist()
    [0, 2]
    >>> select(np.array([0.1, 0.9, 0.5, 0.7]), 2, balance="class", labels=np.array([0, 0, 1, 1])).tolist()
    [1, 3]
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shape {scores.shape}")
    _check_k(k, skip_top)
    SelectionRule(skip_top=skip_top, balance=balance, coverage=coverage, direction=direction)  # the checks
    candidate = ~exclusion_mask(exclude, scores.shape[0])
    if np.isnan(scores[candidate]).any():
        raise ValueError("scores contain NaN at rows that are not excluded (rows no member scored?)")
    rows = np.flatnonzero(candidate)
    tie = _tie_break(seed, scores.shape[0])
    if balance == "none" and coverage is None and direction == "highest":  # the paper's rule, today's bits
        skipped = int(skip_top * rows.size)
        if k > rows.size - skipped:
            raise ValueError(f"cannot select {k} rows: {rows.size} candidates, {skipped} of them skipped as outliers")
        order = np.lexsort((tie[rows], -scores[rows]))  # last key sorts first
        return rows[order[skipped : skipped + k]].astype(np.int64)
    groups = [rows] if balance == "none" else _by_class(rows, labels, scores.shape[0])
    if balance == "class" and 0 < k < len(groups):
        raise ValueError(f"balance='class' cannot give each of {len(groups)} classes a row from a budget of {k}")
    kept = [_after_outliers(group, scores, tie, skip_top, coverage) for group in groups]
    if balance == "none":
        quotas = np.array([k])
    else:
        pool = np.bincount(np.asarray(labels, dtype=np.int64), minlength=len(groups))
        quotas = class_quotas(pool[[int(labels[g[0]]) for g in groups]], k, [len(g) for g in kept], seed=seed)
    if k > sum(len(g) for g in kept):
        raise ValueError(
            f"cannot select {k} rows: {rows.size} candidates, {sum(len(g) for g in kept)} left after the outliers"
        )
    sign = 1.0 if direction == "highest" else -1.0
    chosen = []
    for g, (group, quota) in enumerate(zip(kept, quotas, strict=True)):
        if coverage is None:
            order = np.lexsort((tie[group], -sign * scores[group]))
            chosen.append(group[order[:quota]])
        else:
            chosen.append(_stratified(group, scores, int(quota), coverage.strata, np.random.default_rng([seed, g])))
    picked = np.concatenate(chosen) if chosen else np.empty(0, np.int64)
    if len(chosen) > 1 or coverage is not None:  # one group's top is in order already
        picked = picked[np.lexsort((tie[picked], -sign * scores[picked]))]  # best first, in the direction asked
    return picked.astype(np.int64)


def select_chunks(
    chunks: Iterable[tuple[int, np.ndarray]],
    k: int,
    *,
    num_samples: int,
    exclude: np.ndarray | None = None,
    skip_top: float = 0.0,
    seed: int = 0,
) -> np.ndarray:
    """:func:`select` over scores that arrive in chunks, never all in memory at once.

    The result is exactly ``select(scores, k, exclude=exclude, skip_top=skip_top, seed=seed)``
    of the concatenated scores, the same seeded tie-breaking included. It keeps the best
    ``floor(skip_top * candidates) + k`` candidates seen so far and the tie-break order (4 bytes
    a row: 5 MB for ImageNet's 1.28 million), not the scores.

    Parameters
    ----------
    chunks : iterable of (start, scores)
        Each chunk's first row and its scores, float of shape (n,); together the chunks cover
        rows 0..num_samples-1 once, in any order.
    k, exclude, skip_top, seed
        As :func:`select`.
    num_samples : int
        Number of rows N.

    Returns
    -------
    indices : ndarray of shape (k,), int64

    Raises
    ------
    ValueError
        As :func:`select`, and if the chunks leave a row out, repeat one, or run past N.

    Examples
    --------
    >>> import numpy as np
    >>> from subsetsearch.selection import select_chunks
    >>> select_chunks([(0, np.array([0.1, 0.9])), (2, np.array([0.5, 0.7]))], 2, num_samples=4).tolist()
    [1, 3]
    """
    _check_k(k, skip_top)
    excluded = exclusion_mask(exclude, num_samples)
    candidates = num_samples - int(excluded.sum())
    skipped = int(skip_top * candidates)
    if k > candidates - skipped:
        raise ValueError(f"cannot select {k} rows: {candidates} candidates, {skipped} of them skipped as outliers")
    keep = skipped + k
    tie_all = _tie_break(seed, num_samples)
    seen = np.zeros(num_samples, dtype=bool)
    best_scores, best_rows = np.empty(0, np.float64), np.empty(0, np.int64)
    for start, chunk in chunks:
        chunk = np.asarray(chunk, dtype=np.float64)
        if chunk.ndim != 1 or start < 0 or start + chunk.size > num_samples:
            raise ValueError(f"a chunk of shape {chunk.shape} at row {start} does not fit {num_samples} rows")
        if seen[start : start + chunk.size].any():
            raise ValueError(f"the chunk at row {start} repeats rows of an earlier chunk")
        seen[start : start + chunk.size] = True
        rows = np.arange(start, start + chunk.size, dtype=np.int64)
        take = ~excluded[rows]
        rows, chunk = rows[take], chunk[take]
        if np.isnan(chunk).any():
            raise ValueError("scores contain NaN at rows that are not excluded (rows no member scored?)")
        best_scores, best_rows = _best(
            np.concatenate([best_scores, chunk]), np.concatenate([best_rows, rows]), keep, tie_all
        )
    if not seen.all():
        raise ValueError(f"the chunks leave out {int((~seen).sum())} of {num_samples} rows")
    order = np.lexsort((tie_all[best_rows], -best_scores))
    return best_rows[order[skipped:keep]]


def all_members_disagree(vote_counts: np.ndarray, member_counts: np.ndarray) -> np.ndarray:
    """Rows on which every member predicts a different class: the paper's second outlier rule
    (ImageNet, build up at 80%: about 4% of the pool left out, 70.34 -> 70.09 top-1).

    Parameters
    ----------
    vote_counts : array-like of shape (N, C), int
        How many members predict (argmax) each class for each row
        (:attr:`~subsetsearch.stats.EnsembleStats.vote_counts`).
    member_counts : array-like of shape (N,), int
        How many members scored each row.

    Returns
    -------
    mask : ndarray of shape (N,), bool
        True where two or more members scored the row and no class holds two of their votes.
        Never true with more members than classes (two must then share a class).

    Raises
    ------
    ValueError
        On shapes that do not fit together.

    Examples
    --------
    >>> import numpy as np
    >>> from subsetsearch.selection import all_members_disagree
    >>> votes = np.array([[1, 1, 1], [2, 1, 0], [1, 0, 0]])  # 3, 3 and 1 members per row
    >>> all_members_disagree(votes, np.array([3, 3, 1])).tolist()
    [True, False, False]
    """
    votes, members = np.asarray(vote_counts), np.asarray(member_counts)
    if votes.ndim != 2 or members.shape != votes.shape[:1]:
        raise ValueError(f"vote_counts must be (N, C) and member_counts (N,), got {votes.shape} and {members.shape}")
    if votes.shape[1] == 0:
        return np.zeros(votes.shape[0], dtype=bool)
    return (members >= 2) & (votes.max(axis=1) <= 1)


def class_quotas(pool_counts: np.ndarray, k: int, capacity: list[int] | np.ndarray, *, seed: int = 0) -> np.ndarray:
    """Per-class budgets summing to ``k``, proportional to ``pool_counts`` by the largest-remainder
    method (ties in the remainder go by a seeded random order), never above a class's ``capacity``:
    what a full class cannot take goes to the others, in proportion again.

    Examples
    --------
    >>> class_quotas(np.array([50, 30, 20]), 7, [50, 30, 20]).tolist()  # 3.5, 2.1, 1.4: remainders .5 .1 .4
    [4, 2, 1]
    >>> class_quotas(np.array([50, 30, 20]), 7, [1, 30, 20]).tolist()  # class 0 holds one: 6 over 30:20
    [1, 4, 2]
    """
    counts = np.asarray(pool_counts, dtype=np.float64)
    capacity = np.asarray(capacity, dtype=np.int64)
    if k > capacity.sum():
        raise ValueError(f"cannot select {k} rows: the classes hold {int(capacity.sum())} candidates")
    rank = np.random.default_rng(seed).permutation(len(counts))  # ties in the remainder: this order
    quotas = np.zeros(len(counts), np.int64)
    open_ = capacity > 0
    while quotas.sum() < k:
        left = k - quotas.sum()
        weights = np.where(open_, counts, 0.0)
        if weights.sum() == 0:
            weights = open_.astype(np.float64)
        share = left * weights / weights.sum()
        add = np.floor(share).astype(np.int64)
        extra = left - add.sum()
        order = np.lexsort((rank, -(share - add)))  # largest remainder first
        add[order[:extra]] += 1
        quotas = np.minimum(quotas + add, capacity)
        open_ = quotas < capacity
    return quotas


def _by_class(rows: np.ndarray, labels: np.ndarray | None, num_samples: int) -> list[np.ndarray]:
    """``rows`` split by class (classes in increasing order; classes without a candidate left out)."""
    if labels is None:
        raise ValueError("balance='class' needs labels: the class of every row")
    labels = np.asarray(labels)
    if labels.shape != (num_samples,) or not np.issubdtype(labels.dtype, np.integer) or (labels < 0).any():
        raise ValueError(f"labels must be {num_samples} class indices 0..C-1, got {labels.dtype} {labels.shape}")
    order = rows[np.argsort(labels[rows], kind="stable")]
    return [g for g in np.split(order, np.flatnonzero(np.diff(labels[order])) + 1) if len(g)]


def _after_outliers(rows: np.ndarray, scores: np.ndarray, tie: np.ndarray, skip_top: float, coverage) -> np.ndarray:
    """``rows`` without their ``skip_top`` share of highest scores and, with ``coverage``, without its
    ``prune_hardest`` share of the highest of the rest (ties by the seeded order)."""
    pruned = 0.0 if coverage is None else coverage.prune_hardest
    if skip_top == 0 and pruned == 0:
        return rows  # nothing set aside: no sort
    order = rows[np.lexsort((tie[rows], -scores[rows]))]
    order = order[int(skip_top * len(order)) :]
    return np.sort(order[int(pruned * len(order)) :])


def _stratified(rows: np.ndarray, scores: np.ndarray, budget: int, strata: int, rng: np.random.Generator) -> np.ndarray:
    """CCS within ``rows``: ``strata`` equal-width strata of their score range, ``budget`` spread
    evenly (strata smallest first, each taking at most its share of what is left), at random within."""
    if budget == 0:
        return np.empty(0, np.int64)
    values = scores[rows]
    low, high = values.min(), values.max()
    width = (high - low) / strata
    which = (
        np.zeros(len(rows), np.int64)
        if width == 0
        else np.minimum(((values - low) / width).astype(np.int64), strata - 1)
    )
    members = [rows[which == s] for s in range(strata)]
    sizes = np.array([len(m) for m in members])
    left, chosen = budget, []
    nonempty = int((sizes > 0).sum())
    for s in np.lexsort((np.arange(strata), sizes)):  # smallest first, ties by stratum
        if sizes[s] == 0:
            continue
        take = min(int(sizes[s]), left // nonempty)
        chosen.append(rng.choice(members[s], take, replace=False))
        left -= take
        nonempty -= 1
    return np.concatenate(chosen)


def _check_k(k: int, skip_top: float) -> None:
    check_integer(k, "k", minimum=0)
    check_fraction(skip_top, "skip_top")


def _tie_break(seed: int, num_samples: int) -> np.ndarray:
    """Each row's place in a seeded random order: equal scores are taken in this order."""
    order = np.random.default_rng(seed).permutation(num_samples)
    return order.astype(np.uint32) if num_samples <= np.iinfo(np.uint32).max else order


def _best(scores: np.ndarray, rows: np.ndarray, keep: int, tie: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The ``keep`` best (score, row) pairs in select's order (higher score, then earlier tie rank);
    linear time: a partition finds the boundary score, the tie order settles rows at it."""
    if scores.size <= keep:
        return scores, rows
    if keep == 0:
        return scores[:0], rows[:0]
    boundary = -np.partition(-scores, keep - 1)[keep - 1]
    above = scores > boundary
    at = np.flatnonzero(scores == boundary)
    need = keep - int(above.sum())
    at = at[np.argsort(tie[rows[at]], kind="stable")[:need]]
    chosen = np.concatenate([np.flatnonzero(above), at])
    return scores[chosen], rows[chosen]


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
