"""Streaming sufficient statistics of an ensemble's predictions.

The four acquisition functions need, per sample, only the mean of the member
probabilities, the mean of the member entropies, and each class's vote count.
:class:`EnsembleStats` accumulates those one member (or one row chunk of a
member) at a time, so memory is O(N*C) whatever the number of members.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from subsetsearch.internal.atomic import atomic_path
from subsetsearch.internal.files import npy_header
from subsetsearch.internal.kernels import ENTROPY_SCALE, PROBABILITY_SCALE, accumulate, entropy_of_mean
from subsetsearch.internal.probabilities import (
    check_probability_matrix,
    kernel_values,
    logits_problem,
    pool_rows,
    probability_problem,
)
from subsetsearch.internal.validation import check_integer

__all__ = ["EnsembleStats", "InvalidMemberError", "MappedStats"]

_FORMAT_VERSION = 1
_UINT16_MAX = np.iinfo(np.uint16).max
# Elements per block of rows: the block's accumulators (10 bytes an element,
# 5 MB) stay in cache while each member of update_members adds to it, instead
# of 16 bytes an element of int64 sums crossing the memory bus per member.
_BLOCK_ELEMENTS = 1 << 19
# Members added in one pass by from_members: the same grouping as ``subsetsearch score``.
_MEMBERS_PER_PASS = 16


class InvalidMemberError(ValueError):
    """A member's values are not probabilities (or not finite logits).

    Attributes
    ----------
    member : int
        Position of the failing member in the sequence given to
        :meth:`EnsembleStats.update_members` (0 for :meth:`EnsembleStats.update`).
    """

    def __init__(self, message: str, member: int = 0) -> None:
        super().__init__(message)
        self.member = member


class EnsembleStats:
    """Accumulator of ensemble member predictions over a pool of samples.

    Parameters
    ----------
    num_samples : int
        Number of rows N of the pool.
    num_classes : int
        Number of classes C (at least 2).

    Attributes
    ----------
    probability_sums : ndarray of shape (N, C), int64
        Sum over members of each probability, in steps of ``2**-30`` (fixed point).
    entropy_sums : ndarray of shape (N,), int64
        Sum over members of each member's entropy (nats), in steps of ``2**-32``.
    vote_counts : ndarray of shape (N, C), uint16 or uint32
        Members whose argmax is each class.
    member_counts : ndarray of shape (N,), int64
        Members added to each row.
    metadata : dict
        Free JSON-serialisable information saved with the statistics (for
        example the resume ledger of the members they hold).

    The four arrays are read-only views; :meth:`from_arrays` builds statistics
    from them again and :meth:`equals` compares two accumulators.

    Notes
    -----
    Sums are kept in integer fixed point (probabilities in steps of 2**-30,
    entropies in steps of 2**-32), so :meth:`merge` is exact and associative
    and the result never depends on the order members or shards arrive in.
    Vote counts are ``uint16`` and widen to ``uint32`` by themselves before
    any row reaches 65,535 members.

    Examples
    --------
    >>> import numpy as np
    >>> from subsetsearch import EnsembleStats, acquire
    >>> stats = EnsembleStats(num_samples=2, num_classes=2)
    >>> stats.update(np.array([[0.9, 0.1], [0.5, 0.5]]))
    >>> stats.update(np.array([[0.1, 0.9], [0.5, 0.5]]))
    >>> acquire(stats, "variation_ratios").round(3).tolist()
    [0.5, 0.0]
    """

    def __init__(self, num_samples: int, num_classes: int) -> None:
        num_samples = check_integer(num_samples, "num_samples", minimum=1)
        num_classes = check_integer(num_classes, "num_classes", minimum=2)
        self._sum_fixed = np.zeros((num_samples, num_classes), dtype=np.int64)
        self._entropy_fixed = np.zeros(num_samples, dtype=np.int64)
        self._votes = np.zeros((num_samples, num_classes), dtype=np.uint16)
        self._counts = np.zeros(num_samples, dtype=np.int64)
        self.metadata: dict = {}

    @classmethod
    def from_arrays(
        cls,
        probability_sums: np.ndarray,
        entropy_sums: np.ndarray,
        vote_counts: np.ndarray,
        member_counts: np.ndarray,
        *,
        metadata: dict | None = None,
    ) -> EnsembleStats:
        """Statistics holding the given sums (the attributes of the same names), e.g. a
        shard read back from disk.

        The arrays are used as given when their dtypes already match (no copy).

        Raises
        ------
        ValueError
            If the shapes or dtypes do not fit together: (N, C) int64 sums with C >= 2, (N,)
            entropy sums and member counts, (N, C) uint16/uint32 votes; or if the sums break what
            statistics of members always hold (``check_invariants``).

        Examples
        --------
        >>> import numpy as np
        >>> stats = EnsembleStats(num_samples=2, num_classes=2)
        >>> stats.update(np.array([[0.75, 0.25], [0.5, 0.5]]))
        >>> copy = EnsembleStats.from_arrays(
        ...     stats.probability_sums, stats.entropy_sums, stats.vote_counts, stats.member_counts
        ... )
        >>> copy.equals(stats), copy.mean_probs().tolist()
        (True, [[0.75, 0.25], [0.5, 0.5]])
        """
        sums = np.asarray(probability_sums)
        n, c = sums.shape if sums.ndim == 2 else (0, 0)
        entropy, votes, counts = (np.asarray(a) for a in (entropy_sums, vote_counts, member_counts))
        if (
            n < 1
            or c < 2
            or not np.issubdtype(sums.dtype, np.integer)
            or votes.shape != (n, c)
            or votes.dtype not in (np.uint16, np.uint32)
            or entropy.shape != (n,)
            or counts.shape != (n,)
            or not np.issubdtype(entropy.dtype, np.integer)
            or not np.issubdtype(counts.dtype, np.integer)
        ):
            raise ValueError(
                "inconsistent EnsembleStats arrays: give probability_sums (N, C) int64 with C >= 2, "
                f"entropy_sums (N,), vote_counts (N, C) uint16/uint32, member_counts (N,); got {sums.shape} "
                f"{sums.dtype}, {entropy.shape}, {votes.shape} {votes.dtype}, {counts.shape}"
            )
        problem = invariant_problem(sums, entropy, votes, counts)
        if problem is not None:
            raise ValueError(f"inconsistent EnsembleStats arrays: {problem}")
        stats = cls.__new__(cls)
        stats._sum_fixed = sums.astype(np.int64, copy=False)
        stats._entropy_fixed = entropy.astype(np.int64, copy=False)
        stats._votes = votes
        stats._counts = counts.astype(np.int64, copy=False)
        stats.metadata = {} if metadata is None else dict(metadata)
        return stats

    @classmethod
    def from_members(cls, members: np.ndarray | Sequence[np.ndarray], *, from_logits: bool = False) -> EnsembleStats:
        """Statistics of every member at once: arrays in, statistics out.

        Parameters
        ----------
        members : array-like of shape (M, N, C), or a sequence of M arrays of shape (N, C)
            Each member's probabilities (or logits with ``from_logits=True``); float16/32/64.
        from_logits : bool, default False
            Apply a numerically stable softmax first.

        Raises
        ------
        ValueError
            If there is no member, the members' shapes differ, or the values are not
            probabilities (:class:`InvalidMemberError`, naming the member).

        Examples
        --------
        >>> import numpy as np
        >>> stats = EnsembleStats.from_members(np.array([[[0.9, 0.1]], [[0.1, 0.9]]]))
        >>> stats.member_counts.tolist(), stats.vote_counts.tolist()
        ([2], [[1, 1]])
        """
        if isinstance(members, np.ndarray):
            if members.ndim != 3:
                raise ValueError(f"members must have shape (M, N, C), got {members.shape}")
            members = list(members)
        members = list(members)
        if not members:
            raise ValueError("members is empty; give at least one (N, C) array")
        first = np.asarray(members[0])
        if first.ndim != 2:
            raise ValueError(f"each member must have shape (N, C), got {first.shape}")
        stats = cls(first.shape[0], first.shape[1])
        for start in range(0, len(members), _MEMBERS_PER_PASS):
            stats.update_members(members[start : start + _MEMBERS_PER_PASS], from_logits=from_logits)
        return stats

    # ------------------------------------------------------------------ state
    @property
    def num_samples(self) -> int:
        """Number of rows N."""
        return self._sum_fixed.shape[0]

    @property
    def num_classes(self) -> int:
        """Number of classes C."""
        return self._sum_fixed.shape[1]

    @property
    def member_counts(self) -> np.ndarray:
        """ndarray of shape (N,), int64: members added to each row (read-only)."""
        return _read_only(self._counts)

    @property
    def vote_counts(self) -> np.ndarray:
        """ndarray of shape (N, C), uint16 or uint32: members whose argmax is each class."""
        return _read_only(self._votes)

    @property
    def probability_sums(self) -> np.ndarray:
        """ndarray of shape (N, C), int64: summed member probabilities in steps of 2**-30 (read-only)."""
        return _read_only(self._sum_fixed)

    @property
    def entropy_sums(self) -> np.ndarray:
        """ndarray of shape (N,), int64: summed member entropies (nats) in steps of 2**-32 (read-only)."""
        return _read_only(self._entropy_fixed)

    def equals(self, other: EnsembleStats) -> bool:
        """True when ``other`` holds exactly the same statistics (sums, votes, counts; not metadata).

        Sums are integers, so two accumulators of the same members agree bit for bit whatever the
        order, sharding or worker their members came in.
        """
        if not isinstance(other, EnsembleStats):
            return False
        return (
            np.array_equal(self._sum_fixed, other._sum_fixed)
            and np.array_equal(self._entropy_fixed, other._entropy_fixed)
            and np.array_equal(self._votes, other._votes)
            and np.array_equal(self._counts, other._counts)
        )

    # ---------------------------------------------------------------- update
    def update(
        self,
        probs: np.ndarray,
        *,
        index: np.ndarray | slice | None = None,
        from_logits: bool = False,
    ) -> None:
        """Add one member's predictions for some rows.

        Parameters
        ----------
        probs : array-like of shape (n, C), float16, float32 or float64
            The member's class probabilities (rows summing to 1; each row is
            divided by its sum, which undoes the rounding of float16 and
            float32 outputs), or its logits with ``from_logits=True``.
            A read-only memory map is fine:
            it is read in blocks of rows and never copied whole.
        index : None, slice, or array-like of shape (n,), int
            Rows of the pool that ``probs`` holds, distinct. ``None`` means
            all N rows in order. A member may arrive in several calls over
            disjoint row sets, in any order.
        from_logits : bool, default False
            Apply a numerically stable softmax first.

        Raises
        ------
        InvalidMemberError
            (a ValueError) for values that are not probabilities (NaN, inf,
            negative, rows not summing to 1) or not finite logits. The
            statistics are then left exactly as they were.
        ValueError
            On a wrong shape or dtype, or an index out of range or repeated.
        """
        self.update_members([probs], index=index, from_logits=from_logits)

    def update_members(
        self,
        members: Sequence[np.ndarray],
        *,
        index: np.ndarray | slice | None = None,
        from_logits: bool = False,
    ) -> None:
        """Add several members' predictions for the same rows.

        The same as calling :meth:`update` for each member, and faster for
        many members: the accumulators are walked once, block by block, and
        every member adds to a block while it is in cache (the ratio is
        ``speedup_blocked_vs_one_by_one`` in benchmarks/acquisition_scaling.py).
        All members are added, or none. Parameters and errors as
        :meth:`update`; a failing member's position in ``members`` is
        ``InvalidMemberError.member``.
        """
        members = [check_probability_matrix(probs, self.num_classes) for probs in members]
        if not members:
            return
        if len({probs.shape[0] for probs in members}) != 1:
            raise ValueError(f"members have different numbers of rows: {[p.shape[0] for p in members]}")
        rows = self._rows(index, members[0].shape[0])
        if rows.size and self._votes.dtype == np.uint16 and self._counts[rows].max() + len(members) > _UINT16_MAX:
            self._votes = self._votes.astype(np.uint32)
        step = max(1, _BLOCK_ELEMENTS // self.num_classes)
        done = []
        for start in range(0, rows.size, step):
            block = slice(start, start + step)
            for position, probs in enumerate(members):
                problem = self._add_chunk(probs[block], rows[block], from_logits, +1)
                if problem is not None:
                    for undo_position, undo_block in reversed(done):  # integer sums: undone exactly
                        self._add_chunk(members[undo_position][undo_block], rows[undo_block], from_logits, -1)
                    raise InvalidMemberError(problem, position)
                done.append((position, block))

    def _add_chunk(self, chunk: np.ndarray, rows: np.ndarray, from_logits: bool, sign: int) -> str | None:
        """Add (sign=+1) or subtract (-1) a chunk; on bad rows undo it and describe them."""
        values, tolerance = kernel_values(chunk, from_logits)
        if values is None:
            return logits_problem(chunk, rows)
        bad = np.zeros(rows.size, dtype=np.bool_)
        arrays = (self._sum_fixed, self._entropy_fixed, self._votes, self._counts, bad)
        accumulate(values, rows, np.float32(sign * PROBABILITY_SCALE), tolerance, *arrays)
        if sign > 0 and bad.any():
            accumulate(values, rows, np.float32(-PROBABILITY_SCALE), tolerance, *arrays)
            return probability_problem(np.asarray(chunk), rows, bad, tolerance)
        return None

    def _rows(self, index: np.ndarray | slice | None, n: int | None) -> np.ndarray:
        return pool_rows(index, n, self.num_samples)

    # ----------------------------------------------------------------- merge
    def merge(self, other: EnsembleStats, *, index: np.ndarray | slice | None = None) -> EnsembleStats:
        """Add another accumulator's members into this one (exact); returns self.

        Parameters
        ----------
        other : EnsembleStats
            Statistics of the same classes.
        index : None, slice, or array-like of shape (other.num_samples,), int
            Rows of this pool that ``other``'s rows are, distinct (a shard scored on its own).
            ``None``: ``other`` covers all N rows in order.

        Raises
        ------
        ValueError
            If the classes differ, or the rows do not match ``index``.
        """
        if not isinstance(other, EnsembleStats):
            raise ValueError(f"can only merge an EnsembleStats, got {type(other).__name__}")
        if (index is None and other.num_samples != self.num_samples) or other.num_classes != self.num_classes:
            raise ValueError(
                f"cannot merge stats of {other.num_samples} samples x {other.num_classes} classes "
                f"into {self.num_samples} x {self.num_classes}"
                + ("; give index= the rows they hold" if index is None else "")
            )
        rows = slice(None) if index is None else _contiguous(self._rows(index, other.num_samples))
        counts = self._counts[rows] + other._counts
        wide = self._votes.dtype == np.uint32 or other._votes.dtype == np.uint32
        if wide or (counts.size and counts.max() > _UINT16_MAX):
            self._votes = self._votes.astype(np.uint32)
        self._votes[rows] += other._votes
        self._sum_fixed[rows] += other._sum_fixed
        self._entropy_fixed[rows] += other._entropy_fixed
        self._counts[rows] = counts
        return self

    def take(self, index: np.ndarray | slice) -> EnsembleStats:
        """A new accumulator holding a copy of rows ``index`` (in that order); ``metadata`` is empty."""
        rows = _contiguous(self._rows(index, None))
        if self._counts[rows].size == 0:
            raise ValueError("take needs at least one row")
        arrays = (self._sum_fixed, self._entropy_fixed, self._votes, self._counts)
        return EnsembleStats.from_arrays(*(np.array(a[rows]) for a in arrays))

    # --------------------------------------------------------------- results
    def mean_probs(self, rows: slice | np.ndarray | None = None) -> np.ndarray:
        """Mean member probabilities p̄, float64 of shape (n, C); NaN for rows with no member."""
        rows = slice(None) if rows is None else rows
        with np.errstate(invalid="ignore", divide="ignore"):
            return self._sum_fixed[rows] / (self._counts[rows, None] * PROBABILITY_SCALE)

    def entropy_of_mean(self) -> np.ndarray:
        """Entropy (nats) of the mean member probabilities, H[p̄], float64 (N,); NaN where no member."""
        entropy = np.empty(self.num_samples, dtype=np.float64)
        entropy_of_mean(self._sum_fixed, self._counts, entropy)
        return entropy

    def mean_member_entropy(self, rows: slice | np.ndarray | None = None) -> np.ndarray:
        """Mean over members of each member's entropy (nats), float64 (n,); NaN where no member."""
        rows = slice(None) if rows is None else rows
        with np.errstate(invalid="ignore", divide="ignore"):
            return self._entropy_fixed[rows] / (self._counts[rows] * ENTROPY_SCALE)

    # ------------------------------------------------------------- save/load
    def save(self, path: str | os.PathLike) -> None:
        """Write the statistics and ``metadata`` to an ``.npz`` file atomically."""
        path = Path(path)
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:
                np.savez(
                    handle,
                    format_version=np.int64(_FORMAT_VERSION),
                    sum_fixed=self._sum_fixed,
                    entropy_fixed=self._entropy_fixed,
                    votes=self._votes,
                    counts=self._counts,
                    metadata=np.array(json.dumps(self.metadata)),
                )

    @classmethod
    def load(cls, path: str | os.PathLike) -> EnsembleStats:
        """Read statistics written by :meth:`save`.

        Raises
        ------
        ValueError
            If the file is missing, not a saved EnsembleStats, or inconsistent.
        """
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
        except FileNotFoundError:
            raise ValueError(f"saved stats '{path}' not found") from None
        except Exception as error:  # zipfile/format errors: one message for all
            raise ValueError(f"'{path}' is not a saved EnsembleStats file ({error})") from None
        expected = {"format_version", "sum_fixed", "entropy_fixed", "votes", "counts", "metadata"}
        if set(arrays) != expected or int(arrays["format_version"]) != _FORMAT_VERSION:
            raise ValueError(f"'{path}' is not a saved EnsembleStats file of format {_FORMAT_VERSION}")
        if arrays["sum_fixed"].dtype != np.int64:
            raise ValueError(f"'{path}' holds inconsistent EnsembleStats arrays")
        try:
            return cls.from_arrays(
                arrays["sum_fixed"],
                arrays["entropy_fixed"],
                arrays["votes"],
                arrays["counts"],
                metadata=json.loads(str(arrays["metadata"])),
            )
        except ValueError:
            raise ValueError(f"'{path}' holds inconsistent EnsembleStats arrays") from None


class MappedStats:
    """EnsembleStats of N rows kept on disk, in memory-mapped ``.npy`` files of one directory.

    For pools whose statistics (about 10 bytes per sample and class: 12.8 GB for ImageNet's
    1,281,167 x 1,000) do not fit in memory. Rows are read and written a block at a time
    (:meth:`read`, :meth:`write`); each call maps the files and unmaps them again, so the memory a
    job holds is its blocks', never the whole file's.

    Parameters
    ----------
    directory : path
        A directory made by :meth:`create`.

    Attributes
    ----------
    metadata : dict
        JSON-serialisable information kept in ``metadata.json`` (:meth:`save_metadata`).
    """

    _ARRAYS = ("sum_fixed", "entropy_fixed", "votes", "counts")

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        try:
            info = json.loads((self.directory / "metadata.json").read_text())
            shapes = {name: self._header(name) for name in self._ARRAYS}
        except (OSError, ValueError) as error:
            raise ValueError(f"'{self.directory}' is not a MappedStats directory ({error})") from None
        if info.get("format_version") != _FORMAT_VERSION:
            raise ValueError(f"'{self.directory}' is not a MappedStats directory of format {_FORMAT_VERSION}")
        (n, c), _ = shapes["sum_fixed"]
        expected = {
            "sum_fixed": ((n, c), np.int64),
            "entropy_fixed": ((n,), np.int64),
            "votes": ((n, c), np.uint16),
            "counts": ((n,), np.int64),
        }
        if any(shapes[name] != (shape, np.dtype(dtype)) for name, (shape, dtype) in expected.items()):
            raise ValueError(f"'{self.directory}' holds inconsistent MappedStats arrays")
        self.num_samples, self.num_classes = n, c
        self.metadata: dict = info.get("metadata", {})

    @classmethod
    def create(
        cls, directory: str | os.PathLike, num_samples: int, num_classes: int, *, beside: Sequence[str] = ()
    ) -> MappedStats:
        """Make an empty store (no member on any row) in a new or empty ``directory``; ``beside``
        names files that may be there already (a state directory's marker and lock).

        The files are sparse: disk is spent as rows are written.
        """
        num_samples = check_integer(num_samples, "num_samples", minimum=1)
        num_classes = check_integer(num_classes, "num_classes", minimum=2)
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if any(entry.name not in beside for entry in directory.iterdir()):
            raise ValueError(f"'{directory}' is not empty; give a new directory")
        shapes = {
            "sum_fixed": ((num_samples, num_classes), np.int64),
            "entropy_fixed": ((num_samples,), np.int64),
            "votes": ((num_samples, num_classes), np.uint16),
            "counts": ((num_samples,), np.int64),
        }
        for name, (shape, dtype) in shapes.items():
            with atomic_path(directory / f"{name}.npy") as tmp:
                np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape).flush()
        _write_metadata(directory, {})
        return cls(directory)

    def _header(self, name: str) -> tuple[tuple[int, ...], np.dtype]:
        return npy_header(self.directory / f"{name}.npy", "statistics file")

    def _map(self, name: str, mode: str) -> np.ndarray:
        return np.lib.format.open_memmap(self.directory / f"{name}.npy", mode=mode)

    def read(self, rows: slice) -> EnsembleStats:
        """An in-memory EnsembleStats of the consecutive ``rows`` (a copy)."""
        start, stop, _ = rows.indices(self.num_samples)
        if stop <= start:
            raise ValueError(f"rows {rows} hold no row of {self.num_samples}")
        return EnsembleStats.from_arrays(*(np.array(self._map(name, "r")[start:stop]) for name in self._ARRAYS))

    def write(self, rows: slice, stats: EnsembleStats) -> None:
        """Overwrite the consecutive ``rows`` with ``stats`` (an overwrite: writing twice is harmless)
        and flush them to disk.

        Raises
        ------
        ValueError
            If the shapes differ, or a row holds more than 65,535 members (votes are uint16 on disk).
        """
        start, stop, _ = rows.indices(self.num_samples)
        if (stop - start, self.num_classes) != (stats.num_samples, stats.num_classes):
            raise ValueError(
                f"cannot write stats of {stats.num_samples} x {stats.num_classes} to rows {start}:{stop} "
                f"of {self.num_samples} x {self.num_classes}"
            )
        if stats.member_counts.max() > _UINT16_MAX:
            raise ValueError(f"a row holds more than {_UINT16_MAX} members, more than a MappedStats file keeps")
        values = (stats.probability_sums, stats.entropy_sums, stats.vote_counts, stats.member_counts)
        for name, value in zip(self._ARRAYS, values, strict=True):
            mapped = self._map(name, "r+")
            mapped[start:stop] = value
            mapped.flush()
            del mapped

    def save_metadata(self) -> None:
        """Write ``metadata`` to ``metadata.json`` atomically."""
        _write_metadata(self.directory, self.metadata)

    def load(self) -> EnsembleStats:
        """All rows as one in-memory EnsembleStats (when they fit in memory)."""
        stats = self.read(slice(None))
        stats.metadata = dict(self.metadata)
        return stats


# --------------------------------------------------------------------- helpers
#: How far a row's probability sum may stray from its members' count (in members): each member's
#: terms are rounded to steps of 2**-30 after a float32 renormalisation.
_ROW_SUM_TOLERANCE = 1e-4


def invariant_problem(sums: np.ndarray, entropy: np.ndarray, votes: np.ndarray, counts: np.ndarray) -> str | None:
    """What statistics of M members on a row always hold, checked row by row (None when they do):
    M >= 0; every probability sum >= 0 and together M members' worth (each member's row sums to 1);
    each member votes once (the votes add up to M); the entropy sum lies in [0, M log C]; a row no
    member scored holds zeros. The first row that breaks one is named."""
    num_classes = sums.shape[1]
    scale = PROBABILITY_SCALE
    with np.errstate(over="ignore"):
        row_sums = sums.sum(axis=1, dtype=np.int64)
        vote_sums = votes.sum(axis=1, dtype=np.int64)
    counts = counts.astype(np.int64, copy=False)
    checks = (
        (counts < 0, "a negative member count {count}"),
        ((sums < 0).any(axis=1), "a negative probability sum"),
        (vote_sums != counts, "votes adding up to {votes}, but {count} members (each member votes once a row)"),
        (
            np.abs(row_sums - counts * scale) > _ROW_SUM_TOLERANCE * counts * scale + num_classes,
            "probabilities adding up to {probability:.6g} members' worth, but {count} members",
        ),
        (
            (entropy < 0)
            | (entropy > counts * (np.log(num_classes) * ENTROPY_SCALE * (1 + 1e-6)) + counts * num_classes),
            "an entropy sum of {entropy:.6g} nats, outside [0, {count} log {classes}]",
        ),
    )
    for bad, text in checks:
        rows = np.flatnonzero(bad)
        if rows.size:
            row = int(rows[0])
            found = text.format(
                count=int(counts[row]),
                votes=int(vote_sums[row]),
                probability=row_sums[row] / scale,
                entropy=entropy[row] / ENTROPY_SCALE,
                classes=num_classes,
            )
            return f"row {row} holds {found}"
    return None


def _write_metadata(directory: Path, metadata: dict) -> None:
    with atomic_path(directory / "metadata.json") as tmp:
        tmp.write_text(json.dumps({"format_version": _FORMAT_VERSION, "metadata": metadata}))


def _contiguous(rows: np.ndarray) -> np.ndarray | slice:
    """A run of consecutive rows as a slice (a view, no gather), else the rows themselves."""
    if rows.size and rows[-1] - rows[0] == rows.size - 1 and np.all(np.diff(rows) == 1):
        return slice(int(rows[0]), int(rows[-1]) + 1)
    return rows


def _read_only(array: np.ndarray) -> np.ndarray:
    view = array.view()
    view.flags.writeable = False
    return view
