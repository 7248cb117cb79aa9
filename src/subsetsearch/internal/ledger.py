"""The one resume ledger: which units of work a saved state already holds.

Everything that resumes keeps one: a run's acquisition statistics (``iter_NN/stats.npz``: units
are (member, shard) pairs), ``subsetsearch score --state x.npz`` (member files) and ``--state DIR``
(member files × shards), a detection step's image scores (``iter_NN/scores.npz``: chunks of
images scored by every member, member :data:`ALL_MEMBERS`), and ``PoolScorer`` (``run/epoch``
members). The ledger is saved inside the file of the state it describes, in one atomic write, so
the two can never disagree: a unit is in the ledger exactly when its work is in the state.

A unit is a member on every row (``shard=None``) or on one shard of rows. When every shard of a
member is held, the member is recorded whole. :class:`Autosave` says when a job saves.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

#: The format tag written with every ledger.
FORMAT = "subsetsearch-ledger/1"
#: Key of a state's metadata that holds its ledger.
KEY = "ledger"
#: The member of a unit done by every member of the ensemble together (a detection chunk).
ALL_MEMBERS = "*"
#: A resumable job saves its state at most this often (seconds) when the state is large: a save
#: writes the whole state, ~10 bytes per (sample, class), more than one unit of work adds.
SAVE_INTERVAL_S = 30.0
#: A state of at most this many elements (samples × classes) is saved after every unit.
SAVE_EVERY_UNIT_ELEMENTS = 1 << 24


@dataclass
class Ledger:
    """Units of work held by a saved state, and the seconds they took.

    Attributes
    ----------
    members : list of str
        Members held on every row, in the order they were completed.
    pairs : set of (str, int)
        (member, shard) units of members held on some shards only.
    seconds : float
        Work time of the held units, summed over sessions.
    """

    members: list[str] = field(default_factory=list)
    pairs: set[tuple[str, int]] = field(default_factory=set)
    seconds: float = 0.0

    def holds(self, member: str, shard: int | None = None) -> bool:
        """True if the state holds ``member`` on every row, or (with ``shard``) on that shard."""
        return member in self.members or (shard is not None and (member, shard) in self.pairs)

    def started(self) -> set[str]:
        """Members held on at least one shard."""
        return set(self.members) | {member for member, _ in self.pairs}

    def add(self, member: str, shard: int | None = None, *, num_shards: int | None = None) -> None:
        """Record ``member`` as held (on ``shard`` of ``num_shards``; whole once every shard is held).

        Raises
        ------
        ValueError
            If the unit is held already: adding it again would count a member twice.
        """
        if self.holds(member, shard):
            raise ValueError(f"the ledger holds {member!r}" + ("" if shard is None else f" on shard {shard}"))
        if shard is None:
            self.members.append(member)
            return
        if num_shards is None or not 0 <= shard < num_shards:
            raise ValueError(f"shard {shard} of member {member!r} needs num_shards > shard, got {num_shards}")
        self.pairs.add((member, shard))
        if all((member, s) in self.pairs for s in range(num_shards)):
            self.pairs.difference_update((member, s) for s in range(num_shards))
            self.members.append(member)

    def units(self, num_shards: int) -> int:
        """Units held, counting a whole member as ``num_shards`` units."""
        return len(self.members) * num_shards + len(self.pairs)

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "members": list(self.members),
            "pairs": [[member, shard] for member, shard in sorted(self.pairs)],
            "seconds": self.seconds,
        }

    @classmethod
    def from_json(cls, data: dict) -> Ledger:
        """A ledger written by :meth:`to_json`; ValueError if it is not one."""
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"not a resume ledger of format {FORMAT}")
        return cls(
            [str(m) for m in data["members"]],
            {(str(m), int(s)) for m, s in data["pairs"]},
            float(data.get("seconds", 0.0)),
        )

    @classmethod
    def of(cls, metadata: dict) -> Ledger:
        """The ledger saved in a state's ``metadata`` (under :data:`KEY`), empty when there is none.

        States saved before the ledger existed are read too: a run's ``members``, ``units``
        (``"member#shard"``) and ``seconds``; ``score --state``'s ``members``; ``PoolScorer``'s
        ``epochs`` (``[run, epoch]``, members ``run/epoch_E``); a detection step's ``chunks_done``;
        ``score --state DIR``'s ``shards`` (``{shard: {"members": [...]}}``).
        """
        if KEY in metadata:
            return cls.from_json(metadata[KEY])
        ledger = cls(seconds=float(metadata.get("seconds", 0.0)))
        ledger.members = [str(m) for m in metadata.get("members", [])]
        ledger.members += [poolscorer_member(run, int(epoch)) for run, epoch in metadata.get("epochs", [])]
        for unit in metadata.get("units", []):
            member, _, shard = str(unit).rpartition("#")
            ledger.pairs.add((member, int(shard)))
        ledger.pairs |= {(ALL_MEMBERS, s) for s in range(int(metadata.get("chunks_done", 0)))}
        for shard, entry in metadata.get("shards", {}).items():
            ledger.pairs |= {(str(member), int(shard)) for member in entry.get("members", [])}
        return ledger

    def save_to(self, metadata: dict) -> dict:
        """``metadata`` with this ledger under :data:`KEY` and no legacy keys (a new dict)."""
        legacy = ("members", "units", "seconds", "epochs", "chunks_done", "shards")
        kept = {key: value for key, value in metadata.items() if key not in (KEY, *legacy)}
        return {**kept, KEY: self.to_json()}


def poolscorer_member(run: str, epoch: int) -> str:
    """The member name of epoch ``epoch`` of training run ``run`` scored by ``PoolScorer``."""
    return f"{run}/epoch_{epoch}"


def parse_poolscorer_member(name: str) -> tuple[str, int]:
    """(run, epoch) of a :func:`poolscorer_member` name."""
    run, _, epoch = name.rpartition("/epoch_")
    return run, int(epoch)


class Autosave:
    """When a resumable job saves: after every unit while its state is small
    (``SAVE_EVERY_UNIT_ELEMENTS``), else at most every ``SAVE_INTERVAL_S`` seconds.

    Parameters
    ----------
    state_elements : int
        Size of the state a save writes (samples × classes).
    """

    def __init__(self, state_elements: int) -> None:
        self.every_unit = state_elements <= SAVE_EVERY_UNIT_ELEMENTS
        self.interval = SAVE_INTERVAL_S  # read here, so a test can shorten it
        self.last = time.monotonic()

    def due(self) -> bool:
        """True when the state should be saved now."""
        return self.every_unit or time.monotonic() - self.last >= self.interval

    def saved(self) -> None:
        """Note that the state was just saved."""
        self.last = time.monotonic()
