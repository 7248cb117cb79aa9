"""One pass over the members' files into a scoring state: each member read once, a block of rows at a
time, into the ensemble statistics and the label statistics that lack it (``subsetsearch score``).

The state (:mod:`subsetsearch.state`) keeps the ledgers, decides when to save and saves; this module
only reads members and adds their rows. :func:`accumulate` keeps the statistics in memory (saved to
``--state x.npz``); :func:`accumulate_mapped` keeps them on disk (``--state DIR``, out of core),
one shard of rows at a time.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from subsetsearch.acquisition import acquire
from subsetsearch.dynamics import DEFAULT_WINDOW, TrainingDynamics, dynamics_path
from subsetsearch.errors import InputError
from subsetsearch.internal.directories import ClaimedDirectory
from subsetsearch.internal.members import MemberSource, member_sources
from subsetsearch.internal.shards import row_shards
from subsetsearch.state import DynamicsPart, MappedStatsPart, Resume, ScoringState, StatsPart
from subsetsearch.stats import EnsembleStats, InvalidMemberError

#: Members added in one pass over the accumulators (EnsembleStats.update_members).
MEMBERS_PER_PASS = 16
#: A shard of rows holds about this many (sample, class) elements: 80 MB of statistics, and 16 MB
#: of each float16 member, in memory at a time.
SHARD_ELEMENTS = 1 << 23
#: Rows that both statistics take in turn while they are in the cache (2 MB of a float32 member).
CACHE_BLOCK_ELEMENTS = 1 << 19
#: What a ``--state DIR`` of statistics holds besides its marker and lock (subsetsearch 0.1.0 and
#: 0.2.0 wrote no marker: a directory of these files only is adopted).
STATE_FILES = frozenset(
    {"metadata.json", "sum_fixed.npy", "entropy_fixed.npy", "votes.npy", "counts.npy", "scores.npy"}
    | {"pending.npz", "dynamics.npz"}
)

ProgressFn = Callable[[int, int], None]
Members = Sequence[str | os.PathLike] | Sequence[MemberSource]


@dataclass(frozen=True)
class DynamicsRequest:
    """What a pass feeds a :class:`~subsetsearch.dynamics.TrainingDynamics`: the pool's labels, the
    Dyn-Unc window, and whether the members' order is kept (forgetting, dyn_unc)."""

    labels: np.ndarray
    window: int = DEFAULT_WINDOW
    ordered: bool = True


def sources_of(members: Members) -> list[MemberSource]:
    """The members as :class:`~subsetsearch.internal.members.MemberSource` (paths expanded)."""
    if all(isinstance(member, MemberSource) for member in members):
        return list(members)
    return member_sources(members)


def member_shape(members: Members) -> tuple[int, int]:
    """(N, C) shared by every member; InputError naming the first that differs."""
    sources = sources_of(members)
    if not sources:
        raise InputError("give member files (one [N, C] array per checkpoint, see --help) or --stats saved.npz")
    shape = None
    for source in sources:
        member, dtype = source.header()
        if len(member) != 2 or member[1] < 2:
            raise InputError(f"{source.label} must be an [N, C] array with C >= 2 classes, got shape {member}")
        if dtype.kind != "f" or dtype.itemsize not in (2, 4, 8):
            raise InputError(f"{source.label} must hold float16/32/64 probabilities, got {dtype}")
        if shape is None:
            shape, first = member, source
        elif member != shape:
            raise InputError(f"{source.label} has shape {member} but {first.label} has {shape}; all must match")
    return shape


def row_blocks(num_samples: int, num_classes: int, elements: int) -> list[slice]:
    """Consecutive row blocks of about ``elements`` (sample, class) elements."""
    return row_shards(num_samples, max(1, elements // num_classes))


def accumulate(
    paths: Members,
    *,
    shape: tuple[int, int] | None = None,
    from_logits: bool = False,
    state_path: str | os.PathLike | None = None,
    on_progress: ProgressFn | None = None,
    stats: bool = True,
    dynamics: DynamicsRequest | None = None,
    members_per_pass: int = MEMBERS_PER_PASS,
    shard_elements: int = SHARD_ELEMENTS,
) -> tuple[EnsembleStats | None, TrainingDynamics | None]:
    """Stream members (memory-mapped ``.npy``/``.npz``, Zarr arrays, Parquet columns: any
    ``member_sources``) into the in-memory ensemble statistics (``stats``) and label statistics
    (``dynamics``): one pass, each member read once, a block of rows at a time.

    Members are added ``members_per_pass`` at a time. With ``state_path`` the statistics are a
    resumable state (``x.npz``, the label statistics in ``dynamics_path(state_path)``): a rerun reads
    a member again only for the statistics that lack it. A member's position in its stream is its
    place among ``paths``. ``shape`` is ``member_shape(paths)`` where the caller has it.
    """
    sources = sources_of(paths)
    num_samples, num_classes = member_shape(sources) if shape is None else shape
    resume = Resume("--state", "file", (num_samples, num_classes), from_logits, tuple(s.key for s in sources))
    positions = {source.key: p for p, source in enumerate(sources)}
    stats_part = dynamics_part = None
    if stats:
        stats_part = StatsPart.open(
            state_path, num_samples=num_samples, num_classes=num_classes, metadata={"from_logits": from_logits},
            resume=resume,
        )  # fmt: skip
    if dynamics is not None:
        dynamics_part = _dynamics_part(
            None if state_path is None else dynamics_path(state_path), dynamics, num_classes, from_logits, resume
        )
        dynamics_part.check_order(positions, "--state")
    state = ScoringState(
        *(p for p in (stats_part, dynamics_part) if p is not None), state_elements=num_samples * num_classes
    )
    todo = [source for source in sources if state.lacking(source.key)]
    progress = on_progress or (lambda done, total: None)
    progress(len(sources) - len(todo), len(sources))
    for start in range(0, len(todo), members_per_pass):
        group = todo[start : start + members_per_pass]
        lacking = [state.lacking(source.key) for source in group]
        for_stats = [j for j in range(len(group)) if stats_part in lacking[j]]
        for_dynamics = [j for j in range(len(group)) if dynamics_part in lacking[j]]
        members = [source.open() for source in group]
        # both statistics take a block of rows while it is in the cache: the label statistics read
        # what the ensemble statistics have just read, not the member a second time from memory
        elements = shard_elements if not for_dynamics else CACHE_BLOCK_ELEMENTS
        for rows in row_blocks(num_samples, num_classes, elements):
            values = [np.asarray(member[rows]) for member in members]
            if for_stats:
                add_members(
                    stats_part.stats, [values[j] for j in for_stats], [group[j] for j in for_stats], rows, from_logits
                )
            for j in for_dynamics:
                add_to_dynamics(dynamics_part.dynamics, values[j], group[j], rows, positions[group[j].key], from_logits)
        del members  # unmap before the next group
        for j, source in enumerate(group):
            source.close()
            if j in for_stats:
                state.record(stats_part, source.key)
            if j in for_dynamics:
                state.record(dynamics_part, source.key)
                dynamics_part.record_position(source.key, positions[source.key])
        state.checkpoint()
        progress(len(sources) - len(todo) + start + len(group), len(sources))
    state.save()
    return (
        None if stats_part is None else stats_part.stats,
        None if dynamics_part is None else dynamics_part.dynamics,
    )


def accumulate_mapped(
    paths: Members,
    state_dir: str | os.PathLike,
    *,
    shape: tuple[int, int],
    function: str | None,
    labels: np.ndarray | None = None,
    from_logits: bool = False,
    on_progress: ProgressFn | None = None,
    dynamics: DynamicsRequest | None = None,
    members_per_pass: int = MEMBERS_PER_PASS,
    shard_elements: int = SHARD_ELEMENTS,
) -> tuple[MappedStatsPart | None, TrainingDynamics | None]:
    """Score members whose statistics do not fit in memory: out of core, one shard of rows at a time.

    ``state_dir`` is claimed as a state directory of statistics. For each shard every member's rows
    are read (memory-mapped ``.npy`` or Zarr chunks, unmapped after the shard), added to the
    shard's statistics in memory, and the shard is committed with its scores by ``function``
    (:class:`~subsetsearch.state.MappedStatsPart`); the state also saves mid-shard when its policy
    says so. A job killed at any moment and run again continues from its last committed
    (member, shard) pairs, never adding a member to a shard twice.

    ``function`` None: no ensemble statistics (only label statistics asked for). ``dynamics``: the
    label statistics too, O(N) (O(N·J) for dyn_unc) and so held in memory, saved with their own
    ledger of (member, shard) pairs in ``state_dir/dynamics.npz``; members are read once for both.

    Returns the store (its :meth:`~subsetsearch.state.MappedStatsPart.scores`: float64 [N] by
    ``function``) and the label statistics.
    """
    num_samples, num_classes = shape
    sources = sources_of(paths)
    keys = [source.key for source in sources]
    resume = Resume("--state", "directory", shape, from_logits, tuple(keys))
    positions = {key: p for p, key in enumerate(keys)}
    shard_rows = max(1, shard_elements // num_classes)
    with ClaimedDirectory(state_dir, kind="statistics", adopt=_made_before_the_marker):
        store = dynamics_part = scored_as = None
        if function is not None:
            store = MappedStatsPart.open(
                state_dir, num_samples=num_samples, num_classes=num_classes, shard_rows=shard_rows,
                from_logits=from_logits, resume=resume,
            )  # fmt: skip
            scored_as = function if function != "error_count" else f"{function}|{_labels_key(labels)}"
        shards = store.shards if store is not None else row_shards(num_samples, shard_rows)
        if dynamics is not None:
            dynamics_part = _dynamics_part(Path(state_dir) / "dynamics.npz", dynamics, num_classes, from_logits, resume)
            dynamics_part.check_order(positions, "--state")
        parts = [p for p in (store, dynamics_part) if p is not None]
        state = ScoringState(*parts, state_elements=num_samples * num_classes, num_shards=len(shards))
        progress = on_progress or (lambda done, total: None)
        total_units = len(shards) * len(sources) * len(parts)
        progress(sum(state.units(p) for p in parts), total_units)
        for s, rows in enumerate(shards):
            lacking = {source.key: state.lacking(source.key, s) for source in sources}
            todo = [source for source in sources if store is not None and store in lacking[source.key]]
            dynamics_todo = [
                source for source in sources if dynamics_part is not None and dynamics_part in lacking[source.key]
            ]
            if not todo and not dynamics_todo and (store is None or store.scored_as(s) == scored_as):
                continue
            shard = None if store is None else store.open_shard(s, keys)
            needed = [source for source in sources if lacking[source.key]]  # in order
            for start in range(0, len(needed), members_per_pass):
                group = needed[start : start + members_per_pass]
                members = [source.open() for source in group]
                values = [np.asarray(member[rows]) for member in members]
                del members  # unmap: the shard's pages leave this process
                for_stats = [j for j, source in enumerate(group) if source in todo]
                if for_stats:
                    add_members(shard, [values[j] for j in for_stats], [group[j] for j in for_stats], None, from_logits)
                for j, source in enumerate(group):
                    if source in dynamics_todo:
                        add_to_dynamics(
                            dynamics_part.dynamics, values[j], source, rows, positions[source.key], from_logits
                        )
                        state.record(dynamics_part, source.key, s)
                        dynamics_part.record_position(source.key, positions[source.key])
                    if source in todo:
                        state.record(store, source.key, s)
                if start + len(group) < len(needed):  # the shard's end commits it anyway
                    state.checkpoint()
                progress(sum(state.units(p) for p in parts), total_units)
            if store is not None:
                store.set_scores(acquire(shard, function, labels=None if labels is None else labels[rows]), scored_as)
            if not state.checkpoint() and store is not None:
                state.save([store])  # the shard leaves memory: commit it now
        for source in sources:
            source.close()
        state.save()
    return store, None if dynamics_part is None else dynamics_part.dynamics


def _made_before_the_marker(directory: Path) -> bool:
    """A ``--state DIR`` of subsetsearch 0.1.0 or 0.2.0: only the files such a state holds."""
    names = {e.name for e in directory.iterdir() if not (e.name.startswith(".") and e.name.endswith(".tmp"))}
    return names <= STATE_FILES and bool(names & {"metadata.json", "dynamics.npz"})


def _dynamics_part(
    path: Path | None, request: DynamicsRequest, num_classes: int, from_logits: bool, resume: Resume
) -> DynamicsPart:
    return DynamicsPart.open(
        path,
        labels=request.labels,
        num_classes=num_classes,
        window=request.window,
        ordered=request.ordered,
        metadata={"from_logits": from_logits},
        resume=resume,
    )


def add_members(stats: EnsembleStats, values: list, sources: Sequence, index: slice | None, from_logits: bool) -> None:
    """Add members' rows ``index`` to ``stats``; InputError naming the member whose values are bad."""
    try:
        stats.update_members([np.asarray(v) for v in values], index=index, from_logits=from_logits)
    except InvalidMemberError as error:
        raise InputError(f"{sources[error.member].label}: {error}") from None


def add_to_dynamics(
    dynamics: TrainingDynamics, values: np.ndarray, source, rows: slice | None, position: int, from_logits: bool
) -> None:
    """Add a member's rows to the label statistics at its ``position``; InputError naming it when bad."""
    try:
        dynamics.update(values, index=rows, position=position, from_logits=from_logits)
    except InvalidMemberError as error:
        raise InputError(f"{source.label}: {error}") from None
    except ValueError as error:  # a member out of order: the state was made from another order
        raise InputError(f"{source.label}: {error}; give the members in the order of the --state") from None


def _labels_key(labels: np.ndarray | None) -> str:
    """What error_count's scores of a shard depend on besides the statistics: the labels."""
    return "none" if labels is None else hashlib.sha256(np.ascontiguousarray(labels).tobytes()).hexdigest()[:16]
