"""The parts a scoring state is made of: each an accumulator, the ledger of the units it holds, and
the file both are saved in together (:mod:`subsetsearch.state`).

- :class:`StatsPart`: ensemble statistics (:class:`~subsetsearch.stats.EnsembleStats`) in an
  ``.npz``, the ledger in its metadata;
- :class:`DynamicsPart`: label statistics (:class:`~subsetsearch.dynamics.TrainingDynamics`) in an
  ``.npz``, the ledger and the members' positions in its metadata;
- :class:`VotesPart`: each member's predicted class of the scored rows (:class:`MemberVotes`); it
  has no ledger of its own and holds the members the statistics hold, so it is saved before them;
- :class:`ImageScoresPart`: per-image scores (detection), one column per function, and the ledger.

The out-of-core statistics are :class:`~subsetsearch.state.mapped.MappedStatsPart`.
"""

from __future__ import annotations

import abc
import json
import os
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, TypeVar

import numpy as np

from subsetsearch.dynamics import TrainingDynamics
from subsetsearch.errors import InputError
from subsetsearch.internal.atomic import atomic_path
from subsetsearch.internal.ledger import Ledger
from subsetsearch.stats import EnsembleStats

__all__ = ["DynamicsPart", "ImageScoresPart", "MemberVotes", "Part", "Resume", "StatsPart", "VotesPart"]

T = TypeVar("T")


class Part(abc.ABC):
    """One accumulator of a scoring state and the :class:`~subsetsearch.internal.ledger.Ledger` of the
    units it holds, saved together in one atomic write (:meth:`save`), so the two never disagree.

    Parameters
    ----------
    path : Path or None
        Where the part is saved; None keeps it in memory (:meth:`save` then only updates it).
    ledger : Ledger, optional
        The units it holds (resumed from its file).
    saved : bool, default False
        The part was read from its file: :meth:`save` writes nothing until a unit is recorded.
    """

    #: Parts of a state are saved in ascending rank: a part whose holdings follow another's is
    #: saved before it (``docs/architecture.md``, "The scoring state").
    rank: ClassVar[int] = 2
    #: False for a part that keeps no ledger (its holdings are another part's).
    keeps_ledger: ClassVar[bool] = True

    def __init__(self, path: Path | None, ledger: Ledger | None = None, *, saved: bool = False) -> None:
        self.path = None if path is None else Path(path)
        self.ledger = ledger if ledger is not None else Ledger()
        self.changed = not saved

    def recorded(self, member: str, shard: int | None) -> None:
        """A unit was entered in the ledger: the next :meth:`save` writes the part."""
        self.changed = True

    def save(self) -> None:
        """Write the accumulator and its ledger in one atomic write (nothing when unchanged)."""
        if self.changed:
            self._write()
            self.changed = False

    @abc.abstractmethod
    def _write(self) -> None:
        """Write the accumulator with its ledger."""

    @property
    def saved(self) -> bool:
        """True once the part's file exists."""
        return self.path is not None and self.path.exists()


@dataclass(frozen=True)
class Resume:
    """What a resumed ``subsetsearch score`` state must agree with, and how its errors name it.

    Attributes
    ----------
    option : str
        The option that named the state in the messages (``--state``).
    kind : str
        ``file`` or ``directory``: what the messages ask for instead.
    shape : (int, int)
        The members' (N, C).
    from_logits : bool
        The members hold logits (``--logits``).
    members : tuple of str
        The given members' keys, in order.
    """

    option: str
    kind: str
    shape: tuple[int, int]
    from_logits: bool
    members: tuple[str, ...]

    def load(self, read: Callable[[Path], T], path: Path) -> T:
        """``read(path)``, an InputError naming the state when the file is not one it can read."""
        try:
            return read(path)
        except ValueError as error:
            raise InputError(f"{self.option}: {error}; remove it to start over") from None

    def check(self, path: Path, held_shape: tuple[int, int], metadata: dict, ledger: Ledger) -> None:
        """InputError unless the saved state fits these members: the same (N, C), the same
        ``--logits``, and no member the given ones do not include (or that changed since)."""
        num_samples, num_classes = self.shape
        if tuple(held_shape) != (num_samples, num_classes):
            raise InputError(
                f"{self.option} '{path}' holds {held_shape[0]} x {held_shape[1]} stats but the members are "
                f"{num_samples} x {num_classes}; use another {self.option} {self.kind}"
            )
        if metadata.get("from_logits") != self.from_logits:
            raise InputError(
                f"{self.option} '{path}' was made {'with' if not self.from_logits else 'without'} --logits"
            )
        given = set(self.members)
        foreign = sorted(key.split("|")[0] for key in ledger.started() if key not in given)
        if foreign:
            raise InputError(
                f"{self.option} '{path}' holds member '{foreign[0]}', which is not among the given files "
                f"(or changed since); use another {self.option} {self.kind}"
            )


class StatsPart(Part):
    """Ensemble statistics and their ledger, in one ``.npz`` (the ledger in its metadata).

    ``stats`` may be None until the first member (a :class:`~subsetsearch.torch.PoolScorer` learns
    the number of classes from the model): :meth:`merge` then takes the member as the statistics.
    """

    rank = 2

    def __init__(
        self,
        stats: EnsembleStats | None,
        path: Path | None = None,
        ledger: Ledger | None = None,
        *,
        saved: bool = False,
    ) -> None:
        super().__init__(path, ledger, saved=saved)
        self.stats = stats

    @classmethod
    def open(
        cls,
        path: str | os.PathLike | None,
        *,
        num_samples: int | None = None,
        num_classes: int | None = None,
        metadata: dict | None = None,
        resume: Resume | None = None,
    ) -> StatsPart:
        """The statistics saved at ``path``, resumed (and checked against ``resume``), or new ones
        of ``num_samples`` x ``num_classes`` with ``metadata`` (none yet where either is None: the
        first member merged becomes them)."""
        if path is None or not Path(path).exists():
            stats = None
            if num_samples is not None and num_classes is not None:
                stats = EnsembleStats(num_samples, num_classes)
                stats.metadata = dict(metadata or {})
            return cls(stats, None if path is None else Path(path))
        path = Path(path)
        stats = resume.load(EnsembleStats.load, path) if resume is not None else EnsembleStats.load(path)
        ledger = Ledger.of(stats.metadata)
        if resume is not None:
            resume.check(path, (stats.num_samples, stats.num_classes), stats.metadata, ledger)
        return cls(stats, path, ledger, saved=True)

    @classmethod
    def of(cls, stats: EnsembleStats) -> StatsPart:
        """Statistics given in memory, with the ledger their metadata holds (never written to a file)."""
        return cls(stats, None, Ledger.of(stats.metadata), saved=True)

    def merge(self, member: EnsembleStats, *, index: np.ndarray | slice | None = None) -> None:
        """Add a member's (or a shard's) statistics; the first becomes the statistics when there are none."""
        if self.stats is None:
            self.stats = member
        else:
            self.stats.merge(member, index=index)

    def _write(self) -> None:
        if self.stats is None:
            return
        self.stats.metadata = self.ledger.save_to(self.stats.metadata)
        if self.path is not None:
            self.stats.save(self.path)


class DynamicsPart(Part):
    """Label statistics and their ledger, in one ``.npz`` (the ledger in its metadata).

    Ordered statistics (forgetting, dyn_unc) also record each member's position in the stream
    (``positions`` in the metadata): a state resumed with its members in another order is refused,
    naming the member that moved, instead of scoring the old order.
    """

    rank = 0

    def __init__(
        self,
        dynamics: TrainingDynamics | None,
        path: Path | None = None,
        ledger: Ledger | None = None,
        *,
        saved: bool = False,
    ) -> None:
        super().__init__(path, ledger, saved=saved)
        self.dynamics = dynamics

    @classmethod
    def open(
        cls,
        path: str | os.PathLike | None,
        *,
        labels: np.ndarray,
        num_classes: int,
        window: int,
        ordered: bool,
        metadata: dict | None = None,
        resume: Resume | None = None,
    ) -> DynamicsPart:
        """The label statistics saved at ``path``, resumed, or new ones. With ``resume`` (the
        command line) the saved ones must have these labels and settings and fit the members."""
        if path is None or not Path(path).exists():
            dynamics = TrainingDynamics(labels, num_classes=num_classes, window=window, ordered=ordered)
            dynamics.metadata = dict(metadata or {})
            return cls(dynamics, None if path is None else Path(path))
        if resume is None:
            return cls.load(path)
        path = Path(path)
        dynamics = resume.load(TrainingDynamics.load, path)
        ledger = Ledger.of(dynamics.metadata)
        settings = {"num_classes": num_classes, "window": window, "ordered": ordered}
        held = {"num_classes": dynamics.num_classes, "window": dynamics.window, "ordered": dynamics.ordered}
        if held != settings or not np.array_equal(dynamics.labels, labels):
            what = "other labels" if held == settings else f"window {dynamics.window}, ordered={dynamics.ordered}"
            raise InputError(
                f"{resume.option} '{path}' holds label statistics of {what}; use another {resume.option} (or remove it)"
            )
        resume.check(path, (dynamics.num_samples, dynamics.num_classes), dynamics.metadata, ledger)
        return cls(dynamics, path, ledger, saved=True)

    @classmethod
    def load(cls, path: str | os.PathLike) -> DynamicsPart:
        """The label statistics saved at ``path``, as they were saved; ValueError naming the file
        if it is not one."""
        dynamics = TrainingDynamics.load(path)
        return cls(dynamics, Path(path), Ledger.of(dynamics.metadata), saved=True)

    def check_order(self, positions: dict[str, int], option: str) -> None:
        """InputError naming the first held member whose position in ``positions`` (member key ->
        place in the given order) differs from the one it was added at."""
        if self.dynamics is None or not self.dynamics.ordered:
            return
        held = self.dynamics.metadata.get("positions", {})
        for key, position in held.items():
            if key in positions and positions[key] != position:
                raise InputError(
                    f"{option} '{self.path}': member '{key.split('|')[0]}' was member {position + 1} of the state's "
                    f"order and is member {positions[key] + 1} now; give the members in the order of the {option}, "
                    f"or another {option}"
                )

    def record_position(self, key: str, position: int) -> None:
        """Note the position a member was added at (ordered statistics)."""
        if self.dynamics is not None and self.dynamics.ordered:
            self.dynamics.metadata.setdefault("positions", {})[key] = int(position)

    def merge(self, member: TrainingDynamics, *, index: np.ndarray | slice | None = None) -> None:
        """Add a member's (or a shard's) label statistics; the first becomes them when there are none."""
        if self.dynamics is None:
            self.dynamics = member
        else:
            self.dynamics.merge(member, index=index)

    def _write(self) -> None:
        if self.dynamics is None:
            return
        self.dynamics.metadata = self.ledger.save_to(self.dynamics.metadata)
        if self.path is not None:
            self.dynamics.save(self.path)


class MemberVotes:
    """Each member's predicted class (argmax) on the scored rows, in member order: what the
    checkpoint-consensus study reads (``iter_NN/votes.npz``: rows, names, votes [M, n]).

    Members arrive a shard at a time; rows a member has not scored yet hold ``UNSET``.
    """

    UNSET = np.iinfo(np.uint16).max

    def __init__(self, rows: np.ndarray, order: Sequence[str]) -> None:
        self.rows = np.asarray(rows, dtype=np.int64)
        self.order = {name: k for k, name in enumerate(order)}
        self.by_name: dict[str, np.ndarray] = {}

    def set(self, name: str, positions: slice, votes: np.ndarray) -> None:
        """Member ``name``'s votes for the scored rows at ``positions``."""
        if name not in self.by_name:
            self.by_name[name] = np.full(self.rows.size, self.UNSET, dtype=votes.dtype)
        self.by_name[name][positions] = votes

    def save(self, path: Path) -> None:
        names = sorted(self.by_name, key=self.order.__getitem__)
        stacked = np.stack([self.by_name[n] for n in names]) if names else np.zeros((0, self.rows.size), np.uint16)
        _write_npz(path, rows=self.rows, names=np.array(names, dtype=str), votes=stacked)

    @classmethod
    def load(cls, path: Path, rows: np.ndarray, order: Sequence[str], keep: set[str]) -> MemberVotes:
        """The saved votes of the members in ``keep`` (an empty record when the file is missing or
        was written for other rows)."""
        votes = cls(rows, order)
        if not path.is_file():
            return votes
        try:
            with np.load(path, allow_pickle=False) as saved:
                held, names, stacked = saved["rows"], saved["names"].tolist(), saved["votes"]
        except Exception as error:  # zipfile, format and key errors: one message for all
            raise ValueError(f"'{path}' is not a saved votes file ({error})") from None
        if not np.array_equal(held, votes.rows):
            return votes
        for name, row in zip(names, stacked, strict=True):
            if name in keep:
                votes.by_name[name] = row
        return votes


class VotesPart(Part):
    """The members' votes (:class:`MemberVotes`), which hold exactly the members the statistics hold:
    no ledger of their own, saved before the statistics so they are never behind them."""

    rank = 1
    keeps_ledger = False

    def __init__(self, votes: MemberVotes, path: Path, *, saved: bool = False) -> None:
        super().__init__(path, saved=saved)
        self.votes = votes

    @classmethod
    def open(cls, path: Path, *, rows: np.ndarray, order: Sequence[str], held: StatsPart) -> VotesPart:
        """The votes saved at ``path`` of the members ``held`` has started (new ones otherwise)."""
        votes = MemberVotes.load(Path(path), rows, order, held.ledger.started())
        return cls(votes, Path(path), saved=Path(path).is_file())

    def set(self, name: str, positions: slice, votes: np.ndarray) -> None:
        """Member ``name``'s votes for the scored rows at ``positions`` (saved at the next save)."""
        self.votes.set(name, positions, votes)
        self.changed = True

    def _write(self) -> None:
        self.votes.save(self.path)


class ImageScoresPart(Part):
    """Per-image scores (detection): one float64 column [N] per name, NaN where not scored yet, and
    the ledger of the chunks of images they hold, in one ``.npz``.

    ``metadata`` (JSON) is saved beside them: what the scores were computed from (say, the member
    files), so a resumed job can tell whether they still hold.
    """

    rank = 2

    def __init__(
        self,
        columns: dict[str, np.ndarray],
        path: Path | None,
        ledger: Ledger | None = None,
        metadata: dict | None = None,
        *,
        saved: bool = False,
    ) -> None:
        super().__init__(path, ledger, saved=saved)
        self.columns = columns
        self.metadata = dict(metadata or {})

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        *,
        names: Sequence[str],
        num_images: int,
        metadata: dict | None = None,
        label: str | None = None,
    ) -> ImageScoresPart:
        """The scores saved at ``path``, when they were computed from ``metadata``; else new ones
        (NaN). ``label`` names the state in the one-line error for a file it cannot read (None:
        a ValueError naming the file)."""
        path = Path(path)
        fresh = cls({name: np.full(num_images, np.nan) for name in names}, path, metadata=metadata)
        if not path.exists():
            return fresh
        try:
            with np.load(path, allow_pickle=False) as saved:
                arrays = {key: saved[key] for key in saved.files}
            ledger, held = _image_ledger(arrays)
            if any(arrays[name].shape != (num_images,) for name in names):
                raise ValueError("its scores are not one per image")
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as error:
            message = f"'{path}' is not a saved image-scores file ({error})"
            if label is None:
                raise ValueError(message) from None
            raise InputError(f"{label}: {message}; remove it to start over") from None
        if metadata is not None and held != metadata:
            return fresh  # computed from other inputs: start over
        return cls({name: arrays[name] for name in names}, path, ledger, held, saved=True)

    def set(self, rows: np.ndarray | slice, scores: dict[str, np.ndarray]) -> None:
        """Every column's scores of ``rows``."""
        for name, values in scores.items():
            self.columns[name][rows] = values

    def _write(self) -> None:
        ledger = np.array(json.dumps(self.ledger.to_json()))
        extra = {"metadata": np.array(json.dumps(self.metadata))} if self.metadata else {}
        _write_npz(self.path, **self.columns, ledger=ledger, **extra)


def _image_ledger(arrays: dict[str, np.ndarray]) -> tuple[Ledger, dict]:
    """The ledger and metadata of a saved image-scores file. A file of subsetsearch 0.1.0 (before the
    ledger) holds ``chunks_done`` (chunks done in order) and ``seconds`` instead."""
    metadata = json.loads(str(arrays.pop("metadata"))) if "metadata" in arrays else {}
    if "ledger" in arrays:
        return Ledger.from_json(json.loads(str(arrays.pop("ledger")))), metadata
    legacy = {"chunks_done": int(arrays.pop("chunks_done")), "seconds": float(arrays.pop("seconds"))}
    return Ledger.of(legacy), metadata


def _write_npz(path: Path, **arrays: np.ndarray) -> None:
    """Arrays in an uncompressed ``.npz``, atomically."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        np.savez(handle, **arrays)
