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

from subsetsearch.acquisition import ACQUISITION_FUNCTIONS, acquire, check_labels
from subsetsearch.executors.base import score_shards
from subsetsearch.internal.atomic import atomic_path
from subsetsearch.internal.budgets import parse_budget
from subsetsearch.internal.files import InputError, available_memory, check_table_path, write_tables
from subsetsearch.internal.ledger import Autosave, Ledger
from subsetsearch.internal.members import MemberSource, member_sources, read_column
from subsetsearch.selection import exclusion_mask, select, select_chunks
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
    scores: np.ndarray  # (N,) float64, every sample's score
    pool_size: int  # candidates: N minus excluded
    num_members: int
    labels: np.ndarray | None


Members = Sequence[str | os.PathLike] | Sequence[MemberSource]


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


def shard_slices(num_samples: int, num_classes: int) -> list[slice]:
    """Consecutive row blocks of about ``SHARD_ELEMENTS`` elements: the unit of out-of-core work."""
    return score_shards(num_samples, max(1, SHARD_ELEMENTS // num_classes))


def accumulate_members(
    paths: Members,
    *,
    shape: tuple[int, int] | None = None,
    from_logits: bool = False,
    state_path: str | os.PathLike | None = None,
    on_progress: ProgressFn | None = None,
) -> EnsembleStats:
    """Stream members (memory-mapped ``.npy``/``.npz``, Zarr arrays, Parquet columns: any
    ``member_sources``, read a shard of rows at a time) into an in-memory EnsembleStats.

    Members are added ``MEMBERS_PER_PASS`` at a time. With ``state_path`` the statistics are saved
    there atomically with their ledger (the members they hold), when
    :class:`~subsetsearch.internal.ledger.Autosave` says so and after the last member, and a rerun
    skips the members held. ``shape`` is ``member_shape(paths)`` where the caller has it already.
    """
    sources = _sources(paths)
    num_samples, num_classes = member_shape(sources) if shape is None else shape
    stats, ledger = _resume(state_path, num_samples, num_classes, from_logits, sources)
    todo = [source for source in sources if not ledger.holds(source.key)]
    progress = on_progress or (lambda done, total: None)
    progress(len(sources) - len(todo), len(sources))
    autosave = Autosave(num_samples * num_classes)
    for start in range(0, len(todo), MEMBERS_PER_PASS):
        group = todo[start : start + MEMBERS_PER_PASS]
        members = [source.open() for source in group]
        for rows in shard_slices(num_samples, num_classes):
            _add_members(stats, [member[rows] for member in members], group, rows, from_logits)
        del members  # unmap before the next group
        for source in group:
            source.close()
            ledger.add(source.key)
        if state_path is not None and autosave.due():
            _save_state(stats, ledger, state_path)
            autosave.saved()
        progress(len(sources) - len(todo) + start + len(group), len(sources))
    stats.metadata = ledger.save_to(stats.metadata)
    if state_path is not None:
        stats.save(state_path)
    return stats


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
    function: str,
    labels: np.ndarray | None = None,
    from_logits: bool = False,
    on_progress: ProgressFn | None = None,
) -> tuple[MappedStats, Path]:
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

    Returns the store and the path of the scores (float64 [N], by ``function``).
    """
    num_samples, num_classes = shape
    sources = _sources(paths)
    store, ledger = _open_store(state_dir, num_samples, num_classes, from_logits, sources)
    scores_path = store.directory / "scores.npy"
    if not scores_path.is_file():
        with atomic_path(scores_path) as tmp:
            np.lib.format.open_memmap(tmp, mode="w+", dtype=np.float64, shape=(num_samples,)).flush()
    scored_as = function if function != "error_count" else f"{function}|{_labels_key(labels)}"
    shards = shard_slices(num_samples, num_classes)
    scored: dict[str, str | None] = dict(store.metadata.get("scored", {}))
    progress = on_progress or (lambda done, total: None)
    progress(ledger.units(len(shards)), len(shards) * len(sources))
    autosave = Autosave(num_samples * num_classes)
    for s, rows in enumerate(shards):
        todo = [source for source in sources if not ledger.holds(source.key, s)]
        if not todo and scored.get(str(s)) == scored_as:
            continue
        on_disk = any(ledger.holds(source.key, s) for source in sources)
        shard = store.read(rows) if on_disk else EnsembleStats(rows.stop - rows.start, num_classes)
        for start in range(0, len(todo), MEMBERS_PER_PASS):
            group = todo[start : start + MEMBERS_PER_PASS]
            members = [source.open() for source in group]
            _add_members(shard, [member[rows] for member in members], group, None, from_logits)
            del members  # unmap: the shard's pages leave this process
            for source in group:
                ledger.add(source.key, s, num_shards=len(shards))
            scored[str(s)] = None
            if start + len(group) < len(todo) and autosave.due():
                _commit(store, s, rows, shard, _store_metadata(store, ledger, scored), on_disk)
                on_disk = True
                autosave.saved()
            progress(ledger.units(len(shards)), len(shards) * len(sources))
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
    return store, scores_path


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
        if state_dir.exists() and (not state_dir.is_dir() or any(state_dir.iterdir())):
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
    seed: int = 0
    scores_out: Path | None = None
    state: Path | None = None
    saved_stats: Sequence[str | os.PathLike] = ()


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


def score_files(request: ScoreRequest, *, on_progress: ProgressFn | None = None) -> ScoreResult:
    """Score members and write the chosen subset (columns ``index``, ``score``, best first).

    Every check runs first (:func:`check_request`), so a bad input costs seconds and writes nothing.
    """
    inputs = check_request(request)
    num_samples = inputs.shape[0]
    if inputs.mapped:
        _, scores_path = accumulate_mapped(
            inputs.sources,
            request.state,
            shape=inputs.shape,
            function=request.function,
            labels=inputs.labels,
            from_logits=request.logits,
            on_progress=on_progress,
        )
        scores = np.load(scores_path, mmap_mode="r")
        step = max(1, SHARD_ELEMENTS // 8)
        chunks = ((start, np.array(scores[start : start + step])) for start in range(0, num_samples, step))
        chosen = select_chunks(
            chunks, inputs.k, num_samples=num_samples, exclude=inputs.exclude, skip_top=request.skip_top,
            seed=request.seed,
        )  # fmt: skip
    else:
        stats = inputs.saved or accumulate_members(
            inputs.sources,
            shape=inputs.shape,
            from_logits=request.logits,
            state_path=request.state,
            on_progress=on_progress,
        )
        scores = acquire(stats, request.function, labels=inputs.labels)
        chosen = select(scores, inputs.k, exclude=inputs.exclude, skip_top=request.skip_top, seed=request.seed)
    tables = [(inputs.out, {"index": chosen, "score": scores[chosen]})]
    if inputs.scores_out is not None:
        tables.append((inputs.scores_out, {"index": np.arange(num_samples, dtype=np.int64), "score": scores}))
    write_tables(tables)
    num_members = len(inputs.sources) if inputs.saved is None else int(inputs.saved.member_counts.max())
    return ScoreResult(chosen, scores, inputs.pool_size, num_members, inputs.labels)


def check_request(request: ScoreRequest) -> _Inputs:
    """Every check of a request that needs no pass over the members' values; InputError (one line)."""
    if request.function not in ACQUISITION_FUNCTIONS:
        raise InputError(f"unknown --function {request.function!r}; choose one of: {', '.join(ACQUISITION_FUNCTIONS)}")
    if not 0.0 <= request.skip_top < 1.0:
        raise InputError(f"--skip-top must be a fraction in [0, 1), got {request.skip_top}")
    out = check_table_path(request.out, "--out")
    scores_out = None if request.scores_out is None else check_table_path(request.scores_out, "--scores-out")
    if scores_out is not None and scores_out.resolve() == out.resolve():
        raise InputError(f"--out and --scores-out are both '{out}'; give them different files")
    if request.saved_stats and (request.members or request.state is not None):
        raise InputError("--stats takes saved statistics instead of member files and --state; give one or the other")
    saved = load_saved_stats(request.saved_stats) if request.saved_stats else None
    sources = [] if saved is not None else member_sources(request.members)
    shape = (saved.num_samples, saved.num_classes) if saved is not None else member_shape(sources)
    labels = _labels(request, shape)
    exclude = np.zeros(shape[0], dtype=bool)
    if request.exclude is not None:
        indices = read_column(request.exclude, "exclude file", names=("index",))
        try:
            exclude = exclusion_mask(indices, shape[0])
        except ValueError as error:
            raise InputError(f"exclude file '{request.exclude}': {error}") from None
    if saved is not None:
        exclude |= saved.member_counts == 0  # rows the user's pool loader did not yield
    pool_size = shape[0] - int(exclude.sum())
    if pool_size == 0:
        raise InputError("no row is left to select: every row is excluded or unscored")
    k = parse_budget(request.budget, pool_size)
    if k > pool_size - int(request.skip_top * pool_size):
        raise InputError(
            f"--budget {request.budget} with --skip-top {request.skip_top} asks for more than the pool of "
            f"{pool_size} holds"
        )
    mapped = request.state is not None and Path(request.state).suffix.lower() != ".npz"
    needed = shape[0] * shape[1] * STATS_BYTES_PER_ELEMENT
    if saved is None and not mapped and needed > MEMORY_SHARE * available_memory():
        raise InputError(
            f"the ensemble statistics of {shape[0]} x {shape[1]} need {needed / 1e9:.1f} GB, more than "
            f"{MEMORY_SHARE:.0%} of the memory available; give --state DIR (a directory) to keep them on disk"
        )
    return _Inputs(out, scores_out, sources, saved, shape, labels, exclude, pool_size, k, mapped)


def _labels(request: ScoreRequest, shape: tuple[int, int]) -> np.ndarray | None:
    if request.labels is None:
        if request.function == "error_count":
            raise InputError("--function error_count needs --labels y.npy (the pool's classes)")
        return None
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


def summary(result: ScoreResult, function: str) -> str:
    """A few lines a person reads after ``subsetsearch score``."""
    k = result.indices.size
    chosen = result.scores[result.indices]
    lines = [
        f"selected {k} of {result.pool_size} samples ({100 * k / result.pool_size:.1f}%) "
        f"by {function} over {result.num_members} members",
        f"{function}: chosen {chosen.min():.4g} to {chosen.max():.4g} (mean {chosen.mean():.4g}); "
        f"whole pool mean {np.nanmean(result.scores):.4g}",
    ]
    if result.labels is not None:
        num_classes = int(result.labels.max()) + 1
        share = np.bincount(result.labels[result.indices], minlength=num_classes) / k
        pool = np.bincount(result.labels, minlength=num_classes) / result.labels.size
        lines.append(
            "class share, subset vs pool: "
            + ", ".join(f"{c}: {100 * share[c]:.0f}%/{100 * pool[c]:.0f}%" for c in range(num_classes))
        )
    return "\n".join(lines)
