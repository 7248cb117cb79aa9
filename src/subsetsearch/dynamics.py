"""Streaming statistics of how each sample's label fares across members (training dynamics).

The data-pruning literature scores samples by the probability a model gives the true label at
several checkpoints. :class:`TrainingDynamics` accumulates, one member (or one row chunk of a
member) at a time and with O(N) state per function, what these scores need:

- order-free sums: ``el2n`` (Paul et al. 2021), ``variability`` and ``hard_to_learn`` (dataset
  cartography, Swayamdipta et al. 2020);
- with ``ordered=True``, members in order: ``forgetting`` (Toneva et al. 2019) and ``dyn_unc``
  (He et al. 2023), which keeps each row's first and last ``window - 1`` values (O(N·J)).

Every sum is an integer (fixed point), so members and row shards merge exactly and in any
grouping. An ordered accumulator knows each row's first and last member position, refuses a
member that does not come after the last, and joins two halves of one ordered stream only in
their order. :func:`subsetsearch.acquisition.acquire` computes the scores.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from subsetsearch.internal.atomic import atomic_path
from subsetsearch.internal.kernels import (
    PROBABILITY_SCALE,
    TRUE_SQUARE_SCALE,
    add_member,
    join_windows,
    member_terms,
)
from subsetsearch.internal.probabilities import (
    check_probability_matrix,
    kernel_values,
    logits_problem,
    pool_rows,
    probability_problem,
)
from subsetsearch.internal.validation import check_integer
from subsetsearch.stats import InvalidMemberError

__all__ = ["DYNAMICS_FUNCTIONS", "ORDERED_FUNCTIONS", "TrainingDynamics", "dynamics_path"]

#: Functions of the label's probability over members; all need labels.
DYNAMICS_FUNCTIONS = ("el2n", "forgetting", "dyn_unc", "variability", "hard_to_learn")
#: Functions that need the members in order.
ORDERED_FUNCTIONS = ("forgetting", "dyn_unc")
#: Dyn-Unc's window J by default (He et al. 2023).
DEFAULT_WINDOW = 10

_FORMAT_VERSION = 1
_SUMS = ("counts", "distance_fixed", "true_fixed", "true_square_fixed")
#: The arrays only an ordered accumulator keeps, in the order ``add_member`` takes them.
_ORDERED = (
    "first_position",
    "last_position",
    "forgets",
    "first_correct",
    "last_correct",
    "ever_correct",
    "head",
    "recent",
    "window_fixed",
    "windows",
)
#: Empty stand-ins for them (their dtypes and dimensions) in an order-free accumulator.
_STAND_INS = tuple(
    np.zeros((0, 0)) if name in ("head", "recent") else np.zeros(0, np.bool_ if name.endswith("_correct") else np.int64)
    for name in _ORDERED
)


class TrainingDynamics:
    """Accumulator of the label's fate across members, for every sample of a pool.

    Parameters
    ----------
    labels : array-like of shape (N,), int
        The pool's classes, in [0, num_classes).
    num_classes : int
        Number of classes C (at least 2).
    window : int, default 10
        Dyn-Unc's window J (at least 2): the std of the label's probability over J consecutive
        members, averaged over the windows.
    ordered : bool, default True
        Keep what ``forgetting`` and ``dyn_unc`` need; members must then come in order. Without
        it, only the order-free functions are available and members may come in any order.

    Attributes
    ----------
    member_counts : ndarray of shape (N,), int64
        Members added to each row.
    metadata : dict
        Free JSON-serialisable information saved with the statistics.

    Examples
    --------
    >>> import numpy as np
    >>> from subsetsearch.dynamics import TrainingDynamics
    >>> dynamics = TrainingDynamics(np.array([0]), num_classes=2, window=2)
    >>> for p in ([0.8, 0.2], [0.3, 0.7], [0.9, 0.1]):  # right, forgotten, learned again
    ...     dynamics.update(np.array([p]))
    >>> dynamics.scores("forgetting").tolist()
    [1.0]
    >>> dynamics.scores("hard_to_learn").round(6).tolist()  # 1 - mean of 0.8, 0.3, 0.9
    [0.333333]
    """

    def __init__(
        self, labels: np.ndarray, *, num_classes: int, window: int = DEFAULT_WINDOW, ordered: bool = True
    ) -> None:
        num_classes = check_integer(num_classes, "num_classes", minimum=2)
        window = check_integer(window, "window", minimum=2)
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.size == 0 or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(
                f"labels must be a non-empty 1-D array of integers, got shape {labels.shape} {labels.dtype}"
            )
        if labels.min() < 0 or labels.max() >= num_classes:
            raise ValueError(f"labels must lie in [0, {num_classes}), got values from {labels.min()} to {labels.max()}")
        n = labels.size
        self._labels = labels.astype(np.int64)
        self._labels.flags.writeable = False
        self.num_classes = int(num_classes)
        self.window = int(window)
        self.ordered = bool(ordered)
        self._arrays: dict[str, np.ndarray] = {name: np.zeros(n, dtype=np.int64) for name in _SUMS}
        if self.ordered:
            span = self.window - 1
            self._arrays.update(
                first_position=np.full(n, -1, dtype=np.int64),
                last_position=np.full(n, -1, dtype=np.int64),
                forgets=np.zeros(n, dtype=np.int64),
                first_correct=np.zeros(n, dtype=np.bool_),
                last_correct=np.zeros(n, dtype=np.bool_),
                ever_correct=np.zeros(n, dtype=np.bool_),
                window_fixed=np.zeros(n, dtype=np.int64),
                windows=np.zeros(n, dtype=np.int64),
                head=np.full((n, span), np.nan),
                recent=np.full((n, span), np.nan),
            )
        self.metadata: dict = {}

    # ------------------------------------------------------------ properties
    @property
    def num_samples(self) -> int:
        return self._labels.size

    @property
    def labels(self) -> np.ndarray:
        """The pool's classes, int64 (N,), read-only."""
        return self._labels

    @property
    def member_counts(self) -> np.ndarray:
        view = self._arrays["counts"].view()
        view.flags.writeable = False
        return view

    def equals(self, other: TrainingDynamics) -> bool:
        """The same labels, settings and statistics, bit for bit."""
        return (
            isinstance(other, TrainingDynamics)
            and (self.num_classes, self.window, self.ordered) == (other.num_classes, other.window, other.ordered)
            and np.array_equal(self._labels, other._labels)
            and self._arrays.keys() == other._arrays.keys()
            and all(np.array_equal(a, other._arrays[k], equal_nan=a.dtype.kind == "f") for k, a in self._arrays.items())
        )

    # ---------------------------------------------------------------- update
    def update(
        self,
        probs: np.ndarray,
        *,
        index: np.ndarray | slice | None = None,
        position: int | None = None,
        from_logits: bool = False,
    ) -> None:
        """Add one member's predictions for some rows.

        Parameters
        ----------
        probs : array-like of shape (n, C), float16, float32 or float64
            The member's class probabilities (each row divided by its sum), or logits with
            ``from_logits=True``.
        index : None, slice, or array-like of shape (n,), int
            Rows of the pool that ``probs`` holds, distinct; ``None``: all N rows in order.
        position : int, optional
            The member's place in its stream (an epoch, or its place on the command line); it must
            come after every member each of these rows holds. ``None``: right after the last.
            Only an ordered accumulator keeps positions.
        from_logits : bool, default False
            Apply a numerically stable softmax first.

        Raises
        ------
        InvalidMemberError
            For values that are not probabilities; nothing is added.
        ValueError
            On a wrong shape or dtype, an index out of range or repeated, or a member out of order.
        """
        probs = check_probability_matrix(probs, self.num_classes)
        rows = self._rows(index, probs.shape[0])
        if position is not None:
            check_integer(position, "position")
        if self.ordered:
            positions = self._positions(rows, position)
        values, tolerance = kernel_values(probs, from_logits)
        if values is None:
            raise InvalidMemberError(logits_problem(probs, rows))
        n = rows.size
        true_fixed = np.empty(n, dtype=np.int64)
        distance_fixed = np.empty(n, dtype=np.int64)
        correct = np.empty(n, dtype=np.bool_)
        bad = np.empty(n, dtype=np.bool_)
        member_terms(values, self._labels[rows], tolerance, true_fixed, distance_fixed, correct, bad)
        if bad.any():
            raise InvalidMemberError(probability_problem(np.asarray(probs), rows, bad, tolerance))
        arrays = self._arrays
        if self.ordered:
            ordered = [arrays[name] for name in _ORDERED]
        else:
            ordered, positions = _STAND_INS, np.zeros(0, np.int64)
        add_member(
            rows,
            true_fixed,
            distance_fixed,
            correct,
            positions,
            self.ordered,
            *(arrays[name] for name in _SUMS),
            *ordered,
        )

    def _positions(self, rows: np.ndarray, position: int | None) -> np.ndarray:
        last = self._arrays["last_position"][rows]
        if position is None:
            return last + 1
        early = np.flatnonzero(last >= position)
        if early.size:
            row = int(rows[early[0]])
            raise ValueError(
                f"a member at position {position} comes after the member at position {int(last[early[0]])} of "
                f"sample {row}; forgetting and dyn_unc need the members in order (epochs, command-line order)"
            )
        return np.full(rows.size, int(position), dtype=np.int64)

    def _rows(self, index: np.ndarray | slice | None, n: int) -> np.ndarray:
        return pool_rows(index, n, self.num_samples)

    # ----------------------------------------------------------------- merge
    def merge(self, other: TrainingDynamics, *, index: np.ndarray | slice | None = None) -> TrainingDynamics:
        """Add ``other``'s members into this one; returns self.

        ``other`` covers rows ``index`` of this pool (``None``: all N in order). Rows only one of the
        two holds members for are taken as they are (row shards). Where both hold members, an
        ordered accumulator takes ``other``'s as the members that follow its own (two halves of one
        stream, joined exactly) and refuses them if they do not come after.

        Raises
        ------
        ValueError
            If the labels, classes, window or ordering differ, or the halves are in the wrong order.
        """
        if not isinstance(other, TrainingDynamics):
            raise ValueError(f"can only merge a TrainingDynamics, got {type(other).__name__}")
        if (other.num_classes, other.window, other.ordered) != (self.num_classes, self.window, self.ordered):
            raise ValueError(
                f"cannot merge dynamics of {other.num_classes} classes, window {other.window}, ordered={other.ordered} "
                f"into {self.num_classes} classes, window {self.window}, ordered={self.ordered}"
            )
        rows = np.arange(self.num_samples, dtype=np.int64) if index is None else self._rows(index, other.num_samples)
        if rows.size != other.num_samples:
            raise ValueError(f"cannot merge {other.num_samples} rows into {self.num_samples}; give index= the rows")
        if not np.array_equal(self._labels[rows], other._labels):
            raise ValueError("cannot merge dynamics whose labels differ")
        mine, theirs = self._arrays, other._arrays
        both = (mine["counts"][rows] > 0) & (theirs["counts"] > 0)
        if self.ordered and both.any():
            late = np.flatnonzero(both & (theirs["first_position"] <= mine["last_position"][rows]))
            if late.size:
                row, j = int(rows[late[0]]), late[0]
                raise ValueError(
                    f"cannot join the members at positions {int(theirs['first_position'][j])}.."
                    f"{int(theirs['last_position'][j])} after those at {int(mine['first_position'][row])}.."
                    f"{int(mine['last_position'][row])} of sample {row}: merge the earlier half first"
                )
            self._join(rows[both], other, np.flatnonzero(both))
        only_theirs = (mine["counts"][rows] == 0) & (theirs["counts"] > 0)
        for name in _SUMS:
            mine[name][rows] += theirs[name]
        if self.ordered:
            target, source = rows[only_theirs], np.flatnonzero(only_theirs)
            for name in _ORDERED:
                if name not in ("window_fixed", "windows", "forgets"):
                    mine[name][target] = theirs[name][source]
            for name in ("window_fixed", "windows", "forgets"):
                mine[name][target] += theirs[name][source]
        return self

    def _join(self, rows: np.ndarray, other: TrainingDynamics, source: np.ndarray) -> None:
        """Append ``other``'s rows ``source`` (which follow) to this accumulator's rows ``rows``."""
        mine, theirs = self._arrays, other._arrays
        span = self.window - 1
        out = np.full((rows.size, 3 + 2 * span), np.nan)
        join_windows(
            rows, mine["head"], mine["recent"], mine["counts"], theirs["head"][source], theirs["recent"][source],
            theirs["counts"][source], out,
        )  # fmt: skip
        mine["window_fixed"][rows] += theirs["window_fixed"][source] + out[:, 0].astype(np.int64)
        mine["windows"][rows] += theirs["windows"][source] + out[:, 1].astype(np.int64)
        mine["forgets"][rows] += theirs["forgets"][source] + (
            mine["last_correct"][rows] & ~theirs["first_correct"][source]
        )
        mine["head"][rows] = out[:, 3 : 3 + span]
        mine["recent"][rows] = out[:, 3 + span :]
        mine["last_correct"][rows] = theirs["last_correct"][source]
        mine["last_position"][rows] = theirs["last_position"][source]
        mine["ever_correct"][rows] |= theirs["ever_correct"][source]
        # the sums (counts included) are added by merge after this

    def order_free(self) -> TrainingDynamics:
        """A copy that keeps only the order-free sums (el2n, variability, hard_to_learn): it merges
        with other streams' in any order, e.g. the members of several runs."""
        free = TrainingDynamics(self._labels, num_classes=self.num_classes, window=self.window, ordered=False)
        for name in _SUMS:
            free._arrays[name][...] = self._arrays[name]
        free.metadata = dict(self.metadata)
        return free

    def take(self, index: np.ndarray | slice) -> TrainingDynamics:
        """A new accumulator holding a copy of rows ``index`` (in that order)."""
        rows = self._rows(index, len(np.arange(self.num_samples)[index]) if isinstance(index, slice) else len(index))
        part = TrainingDynamics(
            self._labels[rows], num_classes=self.num_classes, window=self.window, ordered=self.ordered
        )
        for name, array in self._arrays.items():
            part._arrays[name][...] = array[rows]
        return part

    # --------------------------------------------------------------- results
    def scores(self, function: str) -> np.ndarray:
        """The score of ``function`` for every row, float64 (N,); NaN where no member scored.

        Higher means selected first: ``el2n`` (mean distance of the member probabilities to the
        label's one-hot vector), ``forgetting`` (times the label was right at one member and wrong
        at the next; M for a row no member got right), ``dyn_unc`` (mean over windows of J
        consecutive members of the population std of the label's probability), ``variability``
        (population std of the label's probability over members), ``hard_to_learn`` (1 - its mean).

        Raises
        ------
        ValueError
            For an unknown function, an ordered function of an order-free accumulator, or
            ``dyn_unc`` where a scored row holds fewer members than the window.
        """
        if function not in DYNAMICS_FUNCTIONS:
            raise ValueError(f"unknown function {function!r}; choose one of: {', '.join(DYNAMICS_FUNCTIONS)}")
        if function in ORDERED_FUNCTIONS and not self.ordered:
            raise ValueError(f"{function} needs members in order: make the TrainingDynamics with ordered=True")
        arrays = self._arrays
        counts = arrays["counts"].astype(np.float64)
        counts[counts == 0] = np.nan
        with np.errstate(invalid="ignore", divide="ignore"):
            return self._scores(function, counts)

    def _scores(self, function: str, counts: np.ndarray) -> np.ndarray:
        arrays = self._arrays
        if function == "el2n":
            return arrays["distance_fixed"] / PROBABILITY_SCALE / counts
        mean = arrays["true_fixed"] / PROBABILITY_SCALE / counts
        if function == "hard_to_learn":
            return 1.0 - mean
        if function == "variability":
            square = arrays["true_square_fixed"] / TRUE_SQUARE_SCALE / counts
            return np.sqrt(np.maximum(square - mean * mean, 0.0))
        if function == "forgetting":
            never = ~arrays["ever_correct"]
            return np.where(never, counts, arrays["forgets"].astype(np.float64)) + 0.0 * counts
        short = (arrays["counts"] > 0) & (arrays["counts"] < self.window)
        if short.any():
            fewest = int(arrays["counts"][short].min())
            raise ValueError(
                f"dyn_unc needs at least window={self.window} members per sample; some hold {fewest} "
                f"(choose a window from 2 to the number of members, --window on the command line)"
            )
        return arrays["window_fixed"] / PROBABILITY_SCALE / arrays["windows"] + 0.0 * counts

    # ------------------------------------------------------------- save/load
    def save(self, path: str | os.PathLike) -> None:
        """Write the statistics, labels, settings and ``metadata`` to an ``.npz`` file atomically."""
        settings = {"num_classes": self.num_classes, "window": self.window, "ordered": self.ordered}
        with atomic_path(Path(path)) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(
                    handle,
                    format_version=np.int64(_FORMAT_VERSION),
                    labels=self._labels,
                    settings=np.array(json.dumps(settings)),
                    metadata=np.array(json.dumps(self.metadata)),
                    **self._arrays,
                )

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrainingDynamics:
        """Read statistics written by :meth:`save`; ValueError if the file is not one."""
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        except FileNotFoundError:
            raise ValueError(f"saved dynamics '{path}' not found") from None
        except Exception as error:
            raise ValueError(f"'{path}' is not a saved TrainingDynamics file ({error})") from None
        try:
            if int(arrays.pop("format_version")) != _FORMAT_VERSION:
                raise ValueError
            settings = json.loads(str(arrays.pop("settings")))
            dynamics = cls(arrays.pop("labels"), **settings)
            dynamics.metadata = json.loads(str(arrays.pop("metadata")))
            if arrays.keys() != dynamics._arrays.keys():
                raise ValueError
            for name, array in arrays.items():
                if array.shape != dynamics._arrays[name].shape or array.dtype != dynamics._arrays[name].dtype:
                    raise ValueError
                dynamics._arrays[name] = array
        except (KeyError, ValueError, TypeError):
            raise ValueError(f"'{path}' is not a saved TrainingDynamics file of format {_FORMAT_VERSION}") from None
        return dynamics


def dynamics_path(stats_path: str | os.PathLike) -> Path:
    """Where label statistics are kept beside saved ensemble statistics: ``x.npz`` -> ``x.dynamics.npz``
    (``subsetsearch score --state``, ``PoolScorer``; ``score --stats`` looks there)."""
    stats_path = Path(stats_path)
    return stats_path.with_name(stats_path.stem + ".dynamics.npz")
