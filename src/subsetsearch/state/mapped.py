"""Ensemble statistics out of core: a :class:`~subsetsearch.stats.MappedStats` directory written a shard
of rows at a time, as a part of a scoring state (:mod:`subsetsearch.state`).

The directory holds the store's arrays, ``metadata.json`` (the ledger of (member, shard) units, the
function each shard's scores came from, the rows per shard), ``scores.npy`` (each row's score by
that function) and, only while a commit is under way, ``pending.npz`` (its redo record).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from subsetsearch.errors import InputError
from subsetsearch.internal.atomic import atomic_path
from subsetsearch.internal.directories import LOCK, MARKER
from subsetsearch.internal.ledger import Ledger
from subsetsearch.internal.shards import row_shards
from subsetsearch.state.parts import Part, Resume
from subsetsearch.stats import EnsembleStats, MappedStats

__all__ = ["MappedStatsPart"]

#: The redo record of a commit under way.
PENDING = "pending.npz"
#: Each row's score by the function the shard's statistics were scored with.
SCORES = "scores.npy"


class MappedStatsPart(Part):
    """Statistics kept on disk (:class:`~subsetsearch.stats.MappedStats`), with their ledger of
    (member, shard) units and each shard's scores.

    Work goes a shard at a time: :meth:`open_shard` reads the shard's rows into memory (or starts
    them empty), members are added to :attr:`shard`, and :meth:`save` commits it: the rows first,
    then ``metadata.json`` with the ledger, so the ledger never holds a unit the rows lack. Rows that
    already held committed members are first written to a redo record (``pending.npz``): a commit
    cut short is finished the next time the directory is opened. :meth:`set_scores` writes the
    shard's scores beside it and notes the function they came from.
    """

    rank = 2

    def __init__(self, store: MappedStats, shards: list[slice], ledger: Ledger, scored: dict[str, str | None]) -> None:
        super().__init__(store.directory, ledger, saved=True)
        self.store, self.shards, self.scored = store, shards, scored
        self.scores_path = store.directory / SCORES
        self.current: int | None = None
        self.shard: EnsembleStats | None = None
        self._on_disk = False  # the current shard's rows hold committed members
        self._rows_changed = False

    @classmethod
    def open(
        cls,
        directory: str | os.PathLike,
        *,
        num_samples: int,
        num_classes: int,
        shard_rows: int,
        from_logits: bool,
        resume: Resume,
    ) -> MappedStatsPart:
        """The store in ``directory`` (resumed: a commit cut short is finished first, and the store is
        checked against ``resume``), or a new one. A resumed store keeps the shards it was made
        with (``shard_rows`` is for a new one)."""
        directory = Path(directory)
        if not (directory / "metadata.json").is_file():
            store = MappedStats.create(directory, num_samples, num_classes, beside=(MARKER, LOCK))
            store.metadata = {"from_logits": from_logits, "scored": {}, "shard_rows": shard_rows}
            store.save_metadata()
            part = cls(store, row_shards(num_samples, shard_rows), Ledger(), {})
            part._create_scores()
            return part
        store = resume.load(MappedStats, directory)
        # a store of subsetsearch 0.1.0 / 0.2.0 records no shard size: it was made with today's
        shards = row_shards(store.num_samples, int(store.metadata.get("shard_rows", shard_rows)))
        _redo_pending(store, shards)
        ledger = Ledger.of(store.metadata)
        scored = dict(store.metadata.get("scored", {}))
        if "shards" in store.metadata:  # 0.1.0, before the ledger: each shard's function sat beside it
            scored = {s: entry["scored"] for s, entry in store.metadata["shards"].items()}
        resume.check(directory, (store.num_samples, store.num_classes), store.metadata, ledger)
        part = cls(store, shards, ledger, scored)
        part._create_scores()
        return part

    def _create_scores(self) -> None:
        if not self.scores_path.is_file():
            with atomic_path(self.scores_path) as tmp:
                np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float64, shape=(self.store.num_samples,)).flush()

    def holds_any(self, s: int, members: list[str]) -> bool:
        """True if shard ``s``'s rows on disk hold any of ``members``."""
        return any(self.ledger.holds(member, s) for member in members)

    def open_shard(self, s: int, members: list[str]) -> EnsembleStats:
        """Shard ``s``'s statistics in memory (read from disk where they hold any of ``members``)."""
        rows = self.shards[s]
        self.current, self._rows_changed = s, False
        self._on_disk = self.holds_any(s, members)
        if self._on_disk:
            self.shard = self.store.read(rows)
        else:
            self.shard = EnsembleStats(rows.stop - rows.start, self.store.num_classes)
        return self.shard

    def recorded(self, member: str, shard: int | None) -> None:
        super().recorded(member, shard)
        self._rows_changed = True
        self.scored[str(shard)] = None  # the shard's scores no longer hold

    def scored_as(self, s: int) -> str | None:
        """What shard ``s``'s scores were computed by (None: none hold)."""
        return self.scored.get(str(s))

    def set_scores(self, scores: np.ndarray, scored_as: str) -> None:
        """The current shard's scores (float64 [rows]) and what they were computed by."""
        mapped = np.lib.format.open_memmap(self.scores_path, mode="r+")
        mapped[self.shards[self.current]] = scores
        mapped.flush()
        del mapped
        self.scored[str(self.current)] = scored_as
        self.changed = True

    def scores(self) -> np.ndarray:
        """Every row's score, memory-mapped read-only."""
        return np.load(self.scores_path, mmap_mode="r")

    def _write(self) -> None:
        metadata = {**self.ledger.save_to(self.store.metadata), "scored": dict(self.scored)}
        if self.shard is not None and self._rows_changed:
            _commit(self.store, self.current, self.shards[self.current], self.shard, metadata, self._on_disk)
            self._on_disk, self._rows_changed = True, False
        else:  # the rows on disk are unchanged: only what the metadata says is new
            self.store.metadata = metadata
            self.store.save_metadata()


def _commit(store: MappedStats, s: int, rows: slice, shard: EnsembleStats, metadata: dict, on_disk: bool) -> None:
    """Write shard ``s``'s statistics, then the store's new ``metadata``. Rows that hold committed
    members are recorded first in ``pending.npz``, so a commit cut short is redone."""
    pending = store.directory / PENDING
    if on_disk:
        shard.metadata = {"shard": s, "rows": [rows.start, rows.stop], "store_metadata": metadata}
        shard.save(pending)
    store.write(rows, shard)
    store.metadata = metadata
    store.save_metadata()
    pending.unlink(missing_ok=True)


def _redo_pending(store: MappedStats, shards: list[slice]) -> None:
    """Finish a commit a killed job left half done (its redo record is complete or absent)."""
    pending = store.directory / PENDING
    if not pending.is_file():
        return
    try:
        shard = EnsembleStats.load(pending)
    except ValueError as error:
        raise InputError(f"--state '{store.directory}': its redo record is unreadable ({error}); remove it") from None
    s = int(shard.metadata["shard"])
    rows = slice(*shard.metadata["rows"]) if "rows" in shard.metadata else shards[s]
    if "store_metadata" in shard.metadata:
        metadata = shard.metadata["store_metadata"]
    else:  # a redo record of subsetsearch 0.1.0 (before the ledger): the shard's members and scores
        legacy = dict(store.metadata.get("shards", {}))
        legacy[str(s)] = {"members": shard.metadata["members"], "scored": shard.metadata["scored"]}
        metadata = {**store.metadata, "shards": legacy}
    _commit(store, s, rows, shard, metadata, False)
