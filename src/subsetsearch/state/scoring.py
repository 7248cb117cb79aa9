"""The scoring state: parts, one save order, one save policy (:mod:`subsetsearch.state`)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol, TypeVar

from subsetsearch.internal.ledger import Autosave
from subsetsearch.state.parts import Part

__all__ = ["ScoringState", "Unit"]


class Unit(Protocol):
    """A unit of scoring work: a member on every row (``shard`` None) or on one shard of rows."""

    member: str
    shard: int | None


U = TypeVar("U", bound=Unit)


class ScoringState:
    """One resumable scoring state: what is still to do, a unit added, saves in one fixed order and
    by one policy, and what each part holds.

    Parameters
    ----------
    *parts : Part
        The accumulators (each resumed from its file, or new). They are saved in ascending
        :attr:`~subsetsearch.state.parts.Part.rank`: label statistics, then votes, then the ensemble
        statistics or image scores, so a part whose holdings follow another's is never behind it.
    state_elements : int
        Size of what a save writes (samples x classes): the :class:`~subsetsearch.internal.ledger.Autosave`
        policy saves after every unit while it is at most 2**24, else at most every 30 s.
    num_shards : int, optional
        Units are (member, shard) pairs of this many shards; None: whole members.

    Notes
    -----
    A driver merges a unit's work into the parts that lack it, enters it with :meth:`record`, and
    calls :meth:`checkpoint`; at the end, :meth:`save`. Nothing else writes a ledger or decides when
    to save. A unit is in a part's ledger exactly when its work is in the part's file, so a job
    killed at any moment resumes from the last save and never counts a unit twice (``Ledger.add``
    refuses a held unit).
    """

    def __init__(self, *parts: Part, state_elements: int, num_shards: int | None = None) -> None:
        self.parts: list[Part] = sorted(parts, key=lambda part: part.rank)
        self.num_shards = num_shards
        self.autosave = Autosave(state_elements)

    def lacking(self, member: str, shard: int | None = None) -> list[Part]:
        """The parts (with a ledger) that do not hold the unit."""
        return [p for p in self.parts if p.keeps_ledger and not p.ledger.holds(member, shard)]

    def holds(self, member: str, shard: int | None = None) -> bool:
        """True when every part holds the unit."""
        return not self.lacking(member, shard)

    def todo(self, units: Iterable[U]) -> list[U]:
        """The units some part lacks, in the order given."""
        return [unit for unit in units if not self.holds(unit.member, unit.shard)]

    def record(self, part: Part, member: str, shard: int | None = None, *, seconds: float = 0.0) -> None:
        """Enter a unit whose work ``part`` now holds (and the seconds it took) in its ledger."""
        part.ledger.add(member, shard, num_shards=None if shard is None else self.num_shards)
        part.ledger.seconds += seconds
        part.recorded(member, shard)

    def units(self, part: Part) -> int:
        """Units ``part`` holds, a whole member counting as every shard."""
        return part.ledger.units(self.num_shards or 1)

    def checkpoint(self) -> bool:
        """Save if the policy says it is time; True if it saved."""
        if not self.autosave.due():
            return False
        self.save()
        return True

    def save(self, parts: Sequence[Part] | None = None) -> None:
        """Write every part (or only those given) that changed, in the fixed order. Only a save of
        every part restarts the policy's clock."""
        for part in self.parts:
            if parts is None or part in parts:
                part.save()
        if parts is None:
            self.autosave.saved()
