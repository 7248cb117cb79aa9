"""The bring-your-own-predictions path: member files in, a subset table out.

Every check that can fail runs before the long pass over the members, and
nothing is written until the subset is known, so a bad input costs seconds and
leaves no partial output.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from subsetsearch.acquisition import FUNCTIONS, NEEDS_LABELS, NEEDS_ORDER, acquire, check_labels
from subsetsearch.dynamics import DEFAULT_WINDOW, DYNAMICS_FUNCTIONS, TrainingDynamics, dynamics_path
from subsetsearch.executors.base import score_shards
from subsetsearch.internal.atomic import atomic_path
from subsetsearch.internal.budgets import parse_budget
from subsetsearch.internal.files import InputError, available_memory, check_table_path, write_tables
from subsetsearch.internal.ledger import Autosave, Ledger
from subsetsearch.internal.members import MemberSource, member_sources, read_column
from subsetsearch.selection import all_members_disagree, exclusion_mask, select, select_chunks
from subsetsearch.stats import EnsembleStats, InvalidMemberError, MappedStats

#: Members added in one pass over the accumulators (EnsembleStats.update_members).
MEMBERS_PER_PASS = 16
#: A shard of rows holds about this many (sample, class) elements: 80 MB of statistics, and 16 MB
#: of each float16 member, in memory at a time.
SHARD_ELEMENTS = 1 << 23
#: Statistics in memory may take at most this share of the memory the machine has available;
#: larger ones need ``--state DIR`` (memory-mapped on disk).
MEMORY_SHARE = 0.5
#: Bytes of statistics per (sample, class): int64 sums and uint16 votes.
STATS_BYTES_PER_ELEMENT = 10

ProgressFn = Callable[[int, int], None]


@dataclass(frozen=True)
class ScoreResult:
    """What ``score_files`` chose and from what."""

    indices: np.ndarray  # (k,) int64, best first
    scores: np.ndarray  # (N,) float64, every sample's score by the function that chose
    pool_size: int  # candidates: N minus excluded
    num_members: int
    labels: np.ndarray | None
    function: str = ""  # the function that chose
    all_scores: dict[str, np.ndarray] | None = None  # every function's scores, in --scores-out order
    disagreement_outliers: int | None = None  # candidates --skip-disagreement left out (None: not asked)


Members = Sequence[str | os.PathLike] | Sequence[MemberSource]


@dataclass(frozen=True)
class FunctionPlan:
    """The functions one pass computes: ``functions[0]`` chooses the subset; all go to --scores-out."""

    functions: tuple[str, ...]
    window: int = DEFAULT_WINDOW

    @property
    def stats_functions(self) -> tuple[str, ...]:
        """Computed from the ensemble statistics (EnsembleStats)."""
        return tuple(f for f in self.functions if f not in DYNAMICS_FUNCTIONS)

    @property
    def dynamics_functions(self) -> tuple[str, ...]:
        """Computed from the label's probability per member (TrainingDynamics)."""
        return tuple(f for f in self.functions if f in DYNAMICS_FUNCTIONS)

    @property
    def ordered(self) -> bool:
        return any(f in NEEDS_ORDER for f in self.functions)


#: What ``--function all`` puts first (it chooses the subset): the paper's default.
ALL_FIRST = "mutual_information"


def plan_functions(text: str, *, has_labels: bool, num_members: int, window: int = DEFAULT_WINDOW) -> FunctionPlan:
    """``--function``: one name, names joined by commas, or ``all`` (every function the inputs allow).

    InputError for an unknown name, a label-based function without --labels (naming it), or a
    --window outside 2..members where dyn_unc is asked for by name.
    """
    if isinstance(window, bool) or not isinstance(window, int) or window < 2:
        raise InputError(f"--window must be an integer of at least 2, got {window!r}")
    if text.strip() == "all":
        names = [f for f in FUNCTIONS if has_labels or f not in NEEDS_LABELS]
        if num_members < window and "dyn_unc" in names:
            names.remove("dyn_unc")  # not allowed by these inputs: fewer members than the window
        names.sort(key=lambda f: f != ALL_FIRST)
        return FunctionPlan(tuple(names), window)
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise InputError("--function is empty; give a function, several joined by commas, or all")
    for name in names:
        if name not in FUNCTIONS:
            raise InputError(f"unknown --function {name!r}; choose one of: {', '.join(FUNCTIONS)}, or all")
    if len(set(names)) != len(names):
        raise InputError(f"--function names a function twice: {text}")
    for name in names:
        if name in NEEDS_LABELS and not has_labels:
            raise InputError(f"--function {name} needs --labels y.npy (the pool's classes)")
    if "dyn_unc" in names and not 2 <= window <= num_members:
        raise InputError(
            f"dyn_unc: --window {window} must lie from 2 to the number of members ({num_members}); give --window J"
        )
    return FunctionPlan(tuple(names), window)


def _sources(members: Members) -> list[MemberSource]:
    if all(isinstance(member, MemberSource) for member in members):
        return list(members)
    return member_sources(members)


def member_shape(members: Members) -> tuple[int, int]:
    """(N, C) shared by every member; InputError naming the first that differs."""
    sources = _sources(members)
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


#: Rows that both statistics take in turn while they are in the cache (2 MB of a float32 member).
CACHE_BLOCK_ELEMENTS = 1 << 19


def cache_blocks(num_samples: int, num_classes: int) -> list[slice]:
    """Consecutive row blocks of about ``CACHE_BLOCK_ELEMENTS`` elements."""
    return score_shards(num_samples, max(1, CACHE_BLOCK_ELEMENTS // num_classes))


def shard_slices(num_samples: int, num_classes: int) -> list[slice]:
    """Consecutive row blocks of about ``SHARD_ELEMENTS`` elements: the unit of out-of-core work."""
    return score_shards(num_samples, max(1, SHARD_ELEMENTS // num_classes))


@dataclass(frozen=True)
class DynamicsRequest:
    """What a pass feeds a :class:`~subsetsearch.dynamics.TrainingDynamics`: the pool's labels, the
    Dyn-Unc window, and whether the members' order is kept (forgetting, dyn_unc)."""

    labels: np.ndarray
    window: int = DEFAULT_WINDOW
    ordered: bool = True


def accumulate(
    paths: Members,
    *,
    shape: tuple[int, int] | None = None,
    from_logits: bool = False,
    state_path: str | os.PathLike | None = None,
    on_progress: ProgressFn | None = None,
    stats: bool = True,
    dynamics: DynamicsRequest | None = None,
) -> tuple[EnsembleStats | None, TrainingDynamics | None]:
    """Stream members (memory-mapped ``.npy``/``.npz``, Zarr arrays, Parquet columns: any
    ``member_sources``) into the in-memory ensemble statistics (``stats``) and label statistics
    (``dynamics``): one pass, each member read once, a block of rows at a time.

    Members are added ``MEMBERS_PER_PASS`` at a time. Each statistics keeps its own ledger (the
    members it holds) and, with ``state_path``, its own file (the label statistics in
    ``dynamics_path(state_path)``), saved atomically when
    :class:`~subsetsearch.internal.ledger.Autosave` says so and after the last member; a rerun
    reads a member again only for the statistics that lack it. A member's position in its stream
    is its place among ``paths``. ``shape`` is ``member_shape(paths)`` where the caller has it.
    """
    sources = _sources(paths)
    num_samples, num_classes = member_shape(sources) if shape is None else shape
    held_stats, stats_ledger = (None, Ledger())
    if stats:
        held_stats, stats_ledger = _resume(state_path, num_samples, num_classes, from_logits, sources)
    held_dynamics, dynamics_ledger = (None, Ledger())
    if dynamics is not None:
        held_dynamics, dynamics_ledger = _resume_dynamics(state_path, dynamics, num_classes, from_logits, sources)
    position = {source.key: p for p, source in enumerate(sources)}

    def lacking(source: MemberSource) -> bool:
        return (stats and not stats_ledger.holds(source.key)) or (
            dynamics is not None and not dynamics_ledger.holds(source.key)
        )

    todo = [source for source in sources if lacking(source)]
    progress = on_progress or (lambda done, total: None)
    progress(len(sources) - len(todo), len(sources))
    autosave = Autosave(num_samples * num_classes)
    for start in range(0, len(todo), MEMBERS_PER_PASS):
        group = todo[start : start + MEMBERS_PER_PASS]
        members = [source.open() for source in group]
        for_stats = [j for j, source in enumerate(group) if stats and not stats_ledger.holds(source.key)]
        for_dynamics = [
            j for j, source in enumerate(group) if dynamics is not None and not dynamics_ledger.holds(source.key)
        ]
        # both statistics take a block of rows while it is in the cache: the label statistics read
        # what the ensemble statistics have just read, not the member a second time from memory
        blocks = shard_slices(num_samples, num_classes) if not for_dynamics else cache_blocks(num_samples, num_classes)
        for rows in blocks:
            values = [np.asarray(member[rows]) for member in members]
            if for_stats:
                _add_members(
                    held_stats, [values[j] for j in for_stats], [group[j] for j in for_stats], rows, from_logits
                )
            for j in for_dynamics:
                _add_to_dynamics(held_dynamics, values[j], group[j], rows, position[group[j].key], from_logits)
        del members  # unmap before the next group
        for j, source in enumerate(group):
            source.close()
            if j in for_stats:
                stats_ledger.add(source.key)
            if j in for_dynamics:
                dynamics_ledger.add(source.key)
        if state_path is not None and autosave.due():
            _save_states(held_stats, stats_ledger, held_dynamics, dynamics_ledger, state_path)
            autosave.saved()
        progress(len(sources) - len(todo) + start + len(group), len(sources))
    if held_stats is not None:
        held_stats.metadata = stats_ledger.save_to(held_stats.metadata)
    if held_dynamics is not None:
        held_dynamics.metadata = dynamics_ledger.save_to(held_dynamics.metadata)
    if state_path is not None:
        _save_states(held_stats, stats_ledger, held_dynamics, dynamics_ledger, state_path)
    return held_stats, held_dynamics


def _save_states(stats, stats_ledger, dynamics, dynamics_ledger, state_path) -> None:
    if stats is not None:
        _save_state(stats, stats_ledger, state_path)
    if dynamics is not None:
        dynamics.metadata = dynamics_ledger.save_to(dynamics.metadata)
        dynamics.save(dynamics_path(state_path))


def _add_to_dynamics(
    dynamics: TrainingDynamics, values: np.ndarray, source, rows: slice | None, position: int, from_logits: bool
) -> None:
    try:
        dynamics.update(values, index=rows, position=position, from_logits=from_logits)
    except InvalidMemberError as error:
        raise InputError(f"{source.label}: {error}") from None
    except ValueError as error:  # a member out of order: the state was made from another order
        raise InputError(f"{source.label}: {error}; give the members in the order of the --state") from None


def _resume_dynamics(state_path, request: DynamicsRequest, num_classes: int, from_logits: bool, sources, *, path=None):
    """The label statistics saved beside ``state_path`` (or at ``path``) and their ledger, or new ones."""
    settings = {"num_classes": num_classes, "window": request.window, "ordered": request.ordered}
    if path is None:
        path = None if state_path is None else dynamics_path(state_path)
    if path is None or not path.exists():
        dynamics = TrainingDynamics(request.labels, **settings)
        dynamics.metadata = {"from_logits": from_logits}
        return dynamics, Ledger()
    try:
        dynamics = TrainingDynamics.load(path)
    except ValueError as error:
        raise InputError(f"--state: {error}; remove it to start over") from None
    held = {"num_classes": dynamics.num_classes, "window": dynamics.window, "ordered": dynamics.ordered}
    if held != settings or not np.array_equal(dynamics.labels, request.labels):
        what = "other labels" if held == settings else f"window {dynamics.window}, ordered={dynamics.ordered}"
        raise InputError(f"--state '{path}' holds label statistics of {what}; use another --state (or remove it)")
    ledger = Ledger.of(dynamics.metadata)
    shapes = ((dynamics.num_samples, dynamics.num_classes), (request.labels.size, num_classes))
    _check_state(path, "file", shapes, dynamics.metadata, ledger, sources, from_logits)
    return dynamics, ledger


def _save_state(stats: EnsembleStats, ledger: Ledger, path: str | os.PathLike) -> None:
    stats.metadata = ledger.save_to(stats.metadata)
    stats.save(path)


def _add_members(stats: EnsembleStats, values: list, sources: Sequence, index: slice | None, from_logits: bool) -> None:
    try:
        stats.update_members([np.asarray(v) for v in values], index=index, from_logits=from_logits)
    except InvalidMemberError as error:
        raise InputError(f"{sources[error.member].label}: {error}") from None


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
) -> tuple[MappedStats | None, Path | None, TrainingDynamics | None]:
    """Score members whose statistics do not fit in memory: out of core, one shard of rows at a time.

    For each shard (``shard_slices``) every member's rows are read (memory-mapped ``.npy`` or Zarr
    chunks, unmapped after the shard), added to the shard's in-memory statistics, and the shard is
    committed: its statistics are written to the memory-mapped store ``state_dir``
    (:class:`~subsetsearch.stats.MappedStats`), its scores to ``state_dir/scores.npy``, and the
    (member, shard) pairs it now holds to the store's ledger. A commit also happens mid-shard when
    :class:`~subsetsearch.internal.ledger.Autosave` says so. A job killed at any moment and run
    again continues from its last committed (member, shard) pairs, never adding a member to a shard
    twice: rows are overwritten, not added, and a shard that already held members on disk is first
    saved to ``pending.npz`` (a redo record) so a commit cut short is finished on the next start.

    ``function`` None: no ensemble statistics (only label statistics asked for). ``dynamics``: the
    label statistics too, O(N) (O(N·J) for dyn_unc) and so held in memory, saved with their own
    ledger of (member, shard) pairs in ``state_dir/dynamics.npz`` when Autosave says so and at
    the end; members are read once for both.

    Returns the store and the path of the scores (float64 [N], by ``function``), and the label
    statistics.
    """
    num_samples, num_classes = shape
    sources = _sources(paths)
    position = {source.key: p for p, source in enumerate(sources)}
    shards = shard_slices(num_samples, num_classes)
    store, ledger, scores_path, scored, scored_as = None, Ledger(), None, {}, None
    if function is not None:
        store, ledger = _open_store(state_dir, num_samples, num_classes, from_logits, sources)
        scores_path = store.directory / "scores.npy"
        if not scores_path.is_file():
            with atomic_path(scores_path) as tmp:
                np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float64, shape=(num_samples,)).flush()
        scored_as = function if function != "error_count" else f"{function}|{_labels_key(labels)}"
        scored = dict(store.metadata.get("scored", {}))
    elif not Path(state_dir).is_dir():
        Path(state_dir).mkdir(parents=True)
    held_dynamics, dynamics_ledger = None, Ledger()
    if dynamics is not None:
        state = Path(state_dir) / "dynamics.npz"
        held_dynamics, dynamics_ledger = _resume_dynamics(
            state, dynamics, num_classes, from_logits, sources, path=state
        )
    progress = on_progress or (lambda done, total: None)
    total_units = len(shards) * len(sources) * ((function is not None) + (dynamics is not None))

    def units() -> int:
        return ledger.units(len(shards)) + dynamics_ledger.units(len(shards))

    progress(units(), total_units)
    autosave = Autosave(num_samples * num_classes)
    dynamics_autosave = Autosave(num_samples * num_classes)
    for s, rows in enumerate(shards):
        todo = [source for source in sources if store is not None and not ledger.holds(source.key, s)]
        dynamics_todo = [
            source for source in sources if held_dynamics is not None and not dynamics_ledger.holds(source.key, s)
        ]
        rescore = store is not None and scored.get(str(s)) != scored_as
        if not todo and not dynamics_todo and not rescore:
            continue
        on_disk = store is not None and any(ledger.holds(source.key, s) for source in sources)
        shard = None
        if store is not None:
            shard = store.read(rows) if on_disk else EnsembleStats(rows.stop - rows.start, num_classes)
        needed = [source for source in sources if source in todo or source in dynamics_todo]  # in order
        for start in range(0, len(needed), MEMBERS_PER_PASS):
            group = needed[start : start + MEMBERS_PER_PASS]
            members = [source.open() for source in group]
            values = [np.asarray(member[rows]) for member in members]
            del members  # unmap: the shard's pages leave this process
            for_stats = [j for j, source in enumerate(group) if source in todo]
            if for_stats:
                _add_members(shard, [values[j] for j in for_stats], [group[j] for j in for_stats], None, from_logits)
            for j, source in enumerate(group):
                if source in dynamics_todo:
                    _add_to_dynamics(held_dynamics, values[j], source, rows, position[source.key], from_logits)
                    dynamics_ledger.add(source.key, s, num_shards=len(shards))
                if source in todo:
                    ledger.add(source.key, s, num_shards=len(shards))
            if for_stats:
                scored[str(s)] = None
                if start + len(group) < len(needed) and autosave.due():
                    _commit(store, s, rows, shard, _store_metadata(store, ledger, scored), on_disk)
                    on_disk = True
                    autosave.saved()
            if held_dynamics is not None and dynamics_autosave.due():
                _save_dynamics(held_dynamics, dynamics_ledger, state)
                dynamics_autosave.saved()
            progress(units(), total_units)
        if store is None:
            continue
        mapped_scores = np.lib.format.open_memmap(scores_path, mode="r+")
        mapped_scores[rows] = acquire(shard, function, labels=None if labels is None else labels[rows])
        mapped_scores.flush()
        del mapped_scores
        scored[str(s)] = scored_as
        if todo:
            _commit(store, s, rows, shard, _store_metadata(store, ledger, scored), on_disk)
        else:  # the statistics on disk are unchanged: only their scores are new
            store.metadata = _store_metadata(store, ledger, scored)
            store.save_metadata()
    for source in sources:
        source.close()
    if held_dynamics is not None:
        _save_dynamics(held_dynamics, dynamics_ledger, state)
    return store, scores_path, held_dynamics


def _save_dynamics(dynamics: TrainingDynamics, ledger: Ledger, path: Path) -> None:
    dynamics.metadata = ledger.save_to(dynamics.metadata)
    dynamics.save(path)


def _store_metadata(store: MappedStats, ledger: Ledger, scored: dict) -> dict:
    """The store's metadata with this ledger and the function each shard's scores were computed by."""
    return {**ledger.save_to(store.metadata), "scored": dict(scored)}


def _commit(store: MappedStats, s: int, rows: slice, shard: EnsembleStats, metadata: dict, on_disk: bool) -> None:
    """Write shard ``s``'s statistics and then the store's new ``metadata``. Rows that hold
    committed members are recorded first in ``pending.npz``, so a commit cut short is redone."""
    pending = store.directory / "pending.npz"
    if on_disk:
        shard.metadata = {"shard": s, "store_metadata": metadata}
        shard.save(pending)
    store.write(rows, shard)
    store.metadata = metadata
    store.save_metadata()
    pending.unlink(missing_ok=True)


def _redo_pending(store: MappedStats) -> None:
    """Finish a commit a killed job left half done (its redo record is complete or absent)."""
    pending = store.directory / "pending.npz"
    if not pending.is_file():
        return
    shard = EnsembleStats.load(pending)
    s = int(shard.metadata["shard"])
    if "store_metadata" in shard.metadata:
        metadata = shard.metadata["store_metadata"]
    else:  # a redo record written before the ledger: the shard's members and scores
        shards = dict(store.metadata.get("shards", {}))
        shards[str(s)] = {"members": shard.metadata["members"], "scored": shard.metadata["scored"]}
        metadata = {**store.metadata, "shards": shards}
    rows = shard_slices(store.num_samples, store.num_classes)[s]
    _commit(store, s, rows, shard, metadata, False)


def _open_store(state_dir, num_samples, num_classes, from_logits, sources) -> tuple[MappedStats, Ledger]:
    state_dir = Path(state_dir)
    if not (state_dir / "metadata.json").is_file():
        others = [] if not state_dir.is_dir() else [f for f in state_dir.iterdir() if f.name != "dynamics.npz"]
        if state_dir.exists() and (not state_dir.is_dir() or others):
            raise InputError(f"--state '{state_dir}' exists and is not a statistics directory; give a new directory")
        store = MappedStats.create(state_dir, num_samples, num_classes)
        store.metadata = {"from_logits": from_logits, "scored": {}}
        store.save_metadata()
        return store, Ledger()
    try:
        store = MappedStats(state_dir)
    except ValueError as error:
        raise InputError(f"--state: {error}; remove it to start over") from None
    _redo_pending(store)
    ledger = Ledger.of(store.metadata)
    if "shards" in store.metadata:  # written before the ledger: each shard's function moves beside it
        legacy = store.metadata["shards"]
        store.metadata = {**ledger.save_to(store.metadata), "scored": {s: e["scored"] for s, e in legacy.items()}}
    shapes = ((store.num_samples, store.num_classes), (num_samples, num_classes))
    _check_state(state_dir, "directory", shapes, store.metadata, ledger, sources, from_logits)
    return store, ledger


def _check_state(path, kind: str, shapes, metadata: dict, ledger: Ledger, sources, from_logits: bool) -> None:
    """InputError unless saved statistics fit these members: ``shapes`` (saved, members' (N, C))
    equal, the same --logits, and no member the given files do not include (or that changed since)."""
    held_shape, (num_samples, num_classes) = shapes
    if held_shape != (num_samples, num_classes):
        raise InputError(
            f"--state '{path}' holds {held_shape[0]} x {held_shape[1]} stats but the members are "
            f"{num_samples} x {num_classes}; use another --state {kind}"
        )
    if metadata.get("from_logits") != from_logits:
        raise InputError(f"--state '{path}' was made {'with' if not from_logits else 'without'} --logits")
    given = {source.key for source in sources}
    foreign = sorted(key.split("|")[0] for key in ledger.started() if key not in given)
    if foreign:
        raise InputError(
            f"--state '{path}' holds member '{foreign[0]}', which is not among the given files "
            f"(or changed since); use another --state {kind}"
        )


def _labels_key(labels: np.ndarray | None) -> str:
    import hashlib

    return "none" if labels is None else hashlib.sha256(np.ascontiguousarray(labels).tobytes()).hexdigest()[:16]


def _resume(state_path, num_samples, num_classes, from_logits, sources) -> tuple[EnsembleStats, Ledger]:
    if state_path is None or not Path(state_path).exists():
        stats = EnsembleStats(num_samples, num_classes)
        stats.metadata = {"from_logits": from_logits}
        return stats, Ledger()
    try:
        stats = EnsembleStats.load(state_path)
    except ValueError as error:
        raise InputError(f"--state: {error}; remove it to start over") from None
    ledger = Ledger.of(stats.metadata)
    shapes = ((stats.num_samples, stats.num_classes), (num_samples, num_classes))
    _check_state(state_path, "file", shapes, stats.metadata, ledger, sources, from_logits)
    return stats, ledger


@dataclass(frozen=True)
class ScoreRequest:
    """What ``subsetsearch score`` is asked to do: one field per command-line option (same names).

    ``members`` are member files, directories of them, Parquet files (a member per list column) or
    Zarr arrays and groups (``member_sources``); ``saved_stats`` instead are statistics saved by
    ``subsetsearch.torch.PoolScorer`` (or ``--state x.npz``), merged, whose rows no member scored
    are not candidates. ``state`` ending in ``.npz`` keeps the statistics in memory and saves them
    there; any other path is a directory of memory-mapped statistics (``accumulate_mapped``: out of
    core, for statistics larger than memory). Without it the statistics live in memory, if they fit.
    """

    function: str
    budget: str
    out: Path
    members: Sequence[str | os.PathLike] = ()
    labels: Path | None = None
    labels_column: str | None = None
    logits: bool = False
    exclude: Path | None = None
    skip_top: float = 0.0
    skip_disagreement: bool = False
    seed: int = 0
    scores_out: Path | None = None
    state: Path | None = None
    saved_stats: Sequence[str | os.PathLike] = ()
    window: int = DEFAULT_WINDOW


@dataclass
class _Inputs:
    """A request's inputs, every check passed: what remains is the pass over the members."""

    out: Path
    scores_out: Path | None
    sources: list[MemberSource]
    saved: EnsembleStats | None
    shape: tuple[int, int]
    labels: np.ndarray | None
    exclude: np.ndarray  # bool [N]
    pool_size: int
    k: int
    mapped: bool
    plan: FunctionPlan
    saved_dynamics: TrainingDynamics | None = None


def score_files(request: ScoreRequest, *, on_progress: ProgressFn | None = None) -> ScoreResult:
    """Score members by one or several functions in one pass and write the subset the first chose
    (columns ``index``, ``score``, best first) and, with ``--scores-out``, every function's scores.

    Every check runs first (:func:`check_request`), so a bad input costs seconds and writes nothing.
    """
    inputs = check_request(request)
    plan = inputs.plan
    num_samples = inputs.shape[0]
    dynamics_request = None
    if plan.dynamics_functions and inputs.saved_dynamics is None:
        dynamics_request = DynamicsRequest(inputs.labels, plan.window, plan.ordered)
    stats_first = plan.stats_functions[0] if plan.stats_functions else None
    scores: dict[str, np.ndarray] = {}
    stats: EnsembleStats | None = None
    store: MappedStats | None = None
    if inputs.mapped:
        store, scores_path, dynamics = accumulate_mapped(
            inputs.sources,
            request.state,
            shape=inputs.shape,
            function=stats_first,
            labels=inputs.labels,
            from_logits=request.logits,
            on_progress=on_progress,
            dynamics=dynamics_request,
        )
        for function in plan.stats_functions:
            if function == stats_first:
                scores[function] = np.load(scores_path, mmap_mode="r")
            else:  # another pass over the statistics on disk, a shard at a time
                scores[function] = _mapped_scores(store, function, inputs.labels)
    else:
        stats, dynamics = inputs.saved, inputs.saved_dynamics
        if inputs.saved is None:
            stats, dynamics = accumulate(
                inputs.sources,
                shape=inputs.shape,
                from_logits=request.logits,
                state_path=request.state,
                on_progress=on_progress,
                stats=bool(plan.stats_functions),
                dynamics=dynamics_request,
            )
        for function in plan.stats_functions:
            scores[function] = acquire(stats, function, labels=inputs.labels)
    for function in plan.dynamics_functions:
        try:
            scores[function] = acquire(dynamics, function)
        except ValueError as error:  # dyn_unc over rows with fewer members than the window
            raise InputError(str(error)) from None
    first = plan.functions[0]
    chosen_by = scores[first]
    exclude, left_out = inputs.exclude, None
    if request.skip_disagreement:
        outliers = _disagreement(store if inputs.mapped else stats) & ~exclude
        exclude, left_out = exclude | outliers, int(outliers.sum())
        candidates = inputs.pool_size - left_out
        if inputs.k > candidates - int(request.skip_top * candidates):
            raise InputError(
                f"--budget {request.budget} asks for {inputs.k} samples, but --skip-disagreement left out {left_out} "
                f"of the {inputs.pool_size} on which every member predicts a different class; lower the budget"
            )
    if inputs.mapped and first == stats_first:
        step = max(1, SHARD_ELEMENTS // 8)
        chunks = ((start, np.array(chosen_by[start : start + step])) for start in range(0, num_samples, step))
        chosen = select_chunks(
            chunks, inputs.k, num_samples=num_samples, exclude=exclude, skip_top=request.skip_top, seed=request.seed
        )
    else:
        chosen = select(chosen_by, inputs.k, exclude=exclude, skip_top=request.skip_top, seed=request.seed)
    tables = [(inputs.out, {"index": chosen, "score": chosen_by[chosen]})]
    if inputs.scores_out is not None:
        index = np.arange(num_samples, dtype=np.int64)
        columns = {"score": scores[first]} if len(plan.functions) == 1 else {f: scores[f] for f in plan.functions}
        tables.append((inputs.scores_out, {"index": index, **columns}))
    write_tables(tables)
    if inputs.saved is not None:
        num_members = int(inputs.saved.member_counts.max())
    elif inputs.saved_dynamics is not None:
        num_members = int(inputs.saved_dynamics.member_counts.max())
    else:
        num_members = len(inputs.sources)
    return ScoreResult(chosen, chosen_by, inputs.pool_size, num_members, inputs.labels, first, scores, left_out)


def _disagreement(stats: EnsembleStats | MappedStats) -> np.ndarray:
    """Rows on which every member predicts a different class (``--skip-disagreement``), from the
    statistics' vote counts; statistics on disk are read a shard of rows at a time."""
    if isinstance(stats, EnsembleStats):
        return all_members_disagree(stats.vote_counts, stats.member_counts)
    mask = np.empty(stats.num_samples, dtype=bool)
    for rows in shard_slices(stats.num_samples, stats.num_classes):
        part = stats.read(rows)
        mask[rows] = all_members_disagree(part.vote_counts, part.member_counts)
    return mask


def _mapped_scores(store: MappedStats, function: str, labels: np.ndarray | None) -> np.ndarray:
    """``function`` of statistics kept on disk, read a shard of rows at a time."""
    scores = np.empty(store.num_samples, dtype=np.float64)
    for rows in shard_slices(store.num_samples, store.num_classes):
        scores[rows] = acquire(store.read(rows), function, labels=None if labels is None else labels[rows])
    return scores


def check_request(request: ScoreRequest) -> _Inputs:
    """Every check of a request that needs no pass over the members' values; InputError (one line)."""
    out, scores_out = output_paths(request.out, request.scores_out, request.skip_top)
    if request.saved_stats and (request.members or request.state is not None):
        raise InputError("--stats takes saved statistics instead of member files and --state; give one or the other")
    saved = load_saved_stats(request.saved_stats) if request.saved_stats else None
    sources = [] if saved is not None else member_sources(request.members)
    shape = (saved.num_samples, saved.num_classes) if saved is not None else member_shape(sources)
    labels = _labels(request, shape)
    num_members = int(saved.member_counts.max()) if saved is not None else len(sources)
    plan = plan_functions(
        request.function, has_labels=labels is not None, num_members=num_members, window=request.window
    )
    if request.skip_disagreement and not plan.stats_functions:
        raise InputError(
            "--skip-disagreement counts the members' votes, which only the functions of predictions gather; "
            f"add one after the function that chooses (e.g. --function {request.function},entropy)"
        )
    if request.skip_disagreement and num_members < 2:
        raise InputError(f"--skip-disagreement needs 2 or more members to disagree; got {num_members}")
    saved_dynamics = None
    if saved is not None and plan.dynamics_functions:
        saved_dynamics = load_saved_dynamics(request.saved_stats, plan, labels)
    unscored = None if saved is None else saved.member_counts == 0  # rows the user's pool loader did not yield
    exclude, pool_size, k = candidates(request.exclude, shape[0], request.budget, request.skip_top, unscored=unscored)
    mapped = request.state is not None and Path(request.state).suffix.lower() != ".npz"
    needed = shape[0] * shape[1] * STATS_BYTES_PER_ELEMENT
    if saved is None and not mapped and plan.stats_functions and needed > MEMORY_SHARE * available_memory():
        raise InputError(
            f"the ensemble statistics of {shape[0]} x {shape[1]} need {needed / 1e9:.1f} GB, more than "
            f"{MEMORY_SHARE:.0%} of the memory available; give --state DIR (a directory) to keep them on disk"
        )
    return _Inputs(out, scores_out, sources, saved, shape, labels, exclude, pool_size, k, mapped, plan, saved_dynamics)


def output_paths(out: Path, scores_out: Path | None, skip_top: float) -> tuple[Path, Path | None]:
    """``--out`` and ``--scores-out`` checked (table suffixes, not one file), and ``--skip-top``."""
    if not 0.0 <= skip_top < 1.0:
        raise InputError(f"--skip-top must be a fraction in [0, 1), got {skip_top}")
    out = check_table_path(out, "--out")
    scores_out = None if scores_out is None else check_table_path(scores_out, "--scores-out")
    if scores_out is not None and scores_out.resolve() == out.resolve():
        raise InputError(f"--out and --scores-out are both '{out}'; give them different files")
    return out, scores_out


def candidates(
    exclude_path: Path | None, num_rows: int, budget: str, skip_top: float, *, unscored: np.ndarray | None = None
) -> tuple[np.ndarray, int, int]:
    """The rows that cannot be chosen (``--exclude``, and ``unscored``), how many can, and how many
    ``--budget`` asks for; InputError when the budget does not fit."""
    exclude = np.zeros(num_rows, dtype=bool)
    if exclude_path is not None:
        indices = read_column(exclude_path, "exclude file", names=("index",))
        try:
            exclude = exclusion_mask(indices, num_rows)
        except ValueError as error:
            raise InputError(f"exclude file '{exclude_path}': {error}") from None
    if unscored is not None:
        exclude |= unscored
    pool_size = num_rows - int(exclude.sum())
    if pool_size == 0:
        raise InputError("no row is left to select: every row is excluded or unscored")
    k = parse_budget(budget, pool_size)
    if k > pool_size - int(skip_top * pool_size):
        raise InputError(
            f"--budget {budget} with --skip-top {skip_top} asks for more than the pool of {pool_size} holds"
        )
    return exclude, pool_size, k


def _labels(request: ScoreRequest, shape: tuple[int, int]) -> np.ndarray | None:
    if request.labels is None:
        return None  # plan_functions names a function that needs them
    labels = read_column(request.labels, "labels file", request.labels_column)
    try:
        return check_labels(labels, *shape)
    except ValueError as error:
        raise InputError(f"labels file '{request.labels}': {error}") from None


def load_saved_stats(paths: Sequence[str | os.PathLike]) -> EnsembleStats:
    """Statistics saved by ``PoolScorer`` (or ``score --state x.npz``), merged into one ensemble.

    InputError if one is unreadable, the pools differ, or two hold the same member (the same
    (run, epoch) or member file): each member is counted once.
    """
    merged, first, holder, ledger = None, None, {}, Ledger()
    for path in paths:
        try:
            stats = EnsembleStats.load(path)
        except ValueError as error:
            raise InputError(f"--stats: {error}") from None
        if merged is None:
            merged, first = stats, path
        elif (stats.num_samples, stats.num_classes) != (merged.num_samples, merged.num_classes):
            raise InputError(
                f"--stats '{path}' holds {stats.num_samples} x {stats.num_classes} statistics but '{first}' holds "
                f"{merged.num_samples} x {merged.num_classes}; merge statistics of one pool"
            )
        else:
            merged.merge(stats)
        held = Ledger.of(stats.metadata)
        if held.pairs:
            raise InputError(f"--stats '{path}' holds members on some rows only; finish the job that wrote it")
        for member in held.members:
            if member in holder:
                name, other = member.split("|")[0], holder[member]
                raise InputError(
                    f"--stats '{path}' and '{other}' both hold member '{name}'; each member may be counted once"
                )
            holder[member] = path
            ledger.add(member)
    merged.metadata = ledger.save_to({})
    return merged


def load_saved_dynamics(paths: Sequence[str | os.PathLike], plan: FunctionPlan, labels: np.ndarray) -> TrainingDynamics:
    """The label statistics saved beside each ``--stats`` file (``x.dynamics.npz``), merged.

    InputError if one is missing (the PoolScorer had no labels), if they were made with other
    labels or another window than asked for, or if ordered statistics of several runs would have to
    be joined (forgetting and dyn_unc follow one run's members in order).
    """
    merged = None
    for path in paths:
        sibling = dynamics_path(path)
        try:
            dynamics = TrainingDynamics.load(sibling)
        except ValueError:
            raise InputError(
                f"--stats '{path}' has no label statistics beside it ('{sibling}') for "
                f"{', '.join(plan.dynamics_functions)}: give the PoolScorer labels (labels= or (x, y, index) batches)"
            ) from None
        if not np.array_equal(dynamics.labels, labels):
            raise InputError(f"--stats '{path}': its label statistics were made with other labels than --labels")
        if plan.ordered and not dynamics.ordered:
            raise InputError(f"--stats '{path}': its label statistics were kept without the members' order")
        if "dyn_unc" in plan.functions and dynamics.window != plan.window:
            raise InputError(
                f"--stats '{path}' kept dyn_unc with window {dynamics.window}; give --window {dynamics.window}"
            )
        if not plan.ordered:  # order-free functions: several runs' members merge in any order
            dynamics = dynamics.order_free()
        if merged is None:
            merged = dynamics
            continue
        try:
            merged.merge(dynamics)
        except ValueError:
            raise InputError(
                f"--stats '{path}' and '{paths[0]}' hold members of several runs; forgetting and dyn_unc follow one "
                "run in order: score each run's file on its own"
            ) from None
    return merged


def summary(result: ScoreResult, function: str) -> str:
    """A few lines a person reads after ``subsetsearch score``."""
    function = result.function or function
    k = result.indices.size
    chosen = result.scores[result.indices]
    lines = [
        f"selected {k} of {result.pool_size} samples ({100 * k / result.pool_size:.1f}%) "
        f"by {function} over {result.num_members} members",
        f"{function}: chosen {chosen.min():.4g} to {chosen.max():.4g} (mean {chosen.mean():.4g}); "
        f"whole pool mean {np.nanmean(result.scores):.4g}",
    ]
    if result.disagreement_outliers is not None:
        lines.append(
            f"left out {result.disagreement_outliers} samples on which every member predicts a different class "
            "(--skip-disagreement)"
        )
    others = [f for f in (result.all_scores or {}) if f != function]
    if others:
        lines.append(f"also scored (--scores-out): {', '.join(others)}")
    if result.labels is not None:
        num_classes = int(result.labels.max()) + 1
        share = np.bincount(result.labels[result.indices], minlength=num_classes) / k
        pool = np.bincount(result.labels, minlength=num_classes) / result.labels.size
        lines.append(
            "class share, subset vs pool: "
            + ", ".join(f"{c}: {100 * share[c]:.0f}%/{100 * pool[c]:.0f}%" for c in range(num_classes))
        )
    return "\n".join(lines)
